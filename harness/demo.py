"""A demo fleet written through the API, as agents would: the web page's tests, its screenshots
and its benchmark all draw the same hosts (several, one silent, one with a GPU)."""

from __future__ import annotations

import math
import time

from harness.server import LiveApi

STEP = 30  # one sample per 30-s window: every window has a point


def wave(k: int, base: float, amp: float, period: int, phase: float = 0.0) -> float:
    """A smooth, plausible value for sample ``k`` (no randomness: reruns draw the same)."""
    return base + amp * math.sin(2 * math.pi * k / period + phase) + 0.3 * amp * math.sin(k / 7.0)


def host_series(seed: int, gpus: int = 0) -> list[tuple[str, dict, str, float, float]]:
    """(metric, tags, unit, base, amplitude) of one demo host: the agent's usual metrics."""
    s = seed % 7
    out = [
        ("cpu.percent", {"cpu": "total"}, "percent", 35 + 5 * s, 20),
        ("cpu.percent", {"cpu": "0"}, "percent", 40 + 4 * s, 25),
        ("cpu.percent", {"cpu": "1"}, "percent", 30 + 3 * s, 25),
        ("load.1m", {}, "load", 1.5 + 0.2 * s, 1.0),
        ("mem.percent", {}, "percent", 50 + 3 * s, 8),
        ("mem.used.bytes", {}, "B", 8e9 + 5e8 * s, 1e9),
        ("disk.percent", {"mount": "/"}, "percent", 60 + 2 * s, 1),
        ("disk.percent", {"mount": "/data"}, "percent", 30 + 5 * s, 2),
        ("net.recv.bytes_per_s", {"interface": "eth0"}, "B/s", 2e6, 1.5e6),
        ("net.sent.bytes_per_s", {"interface": "eth0"}, "B/s", 8e5, 6e5),
        ("power.cpu_package.watts", {"package": "0"}, "W", 45 + 3 * s, 20),
    ]
    for g in range(gpus):
        out += [
            ("gpu.utilization.percent", {"gpu": str(g)}, "percent", 60 + 10 * g, 35),
            ("gpu.power.watts", {"gpu": str(g)}, "W", 220 + 20 * g, 90),
        ]
    return out


def batch(
    spec: list[tuple[str, dict, str, float, float]], t_first: float, n: int, step: int = STEP
) -> list[dict]:
    """One POST body's series: ``n`` samples per series, ``step`` seconds apart."""
    return [
        {
            "metric": metric,
            "tags": tags,
            "unit": unit,
            "points": [
                [t_first + step * k, max(0.0, wave(k, base, amp, 240, i))] for k in range(n)
            ],
        }
        for i, (metric, tags, unit, base, amp) in enumerate(spec)
    ]


def write_host(
    api: LiveApi,
    host: str,
    spec: list[tuple[str, dict, str, float, float]],
    span_s: int,
    silent_s: int = 0,
    step: int = STEP,
    points_per_post: int = 200_000,
) -> int:
    """``span_s`` seconds of ``spec`` for ``host`` ending ``silent_s`` ago; the windows written."""
    token = api.token_for("agent", host)
    end = (int(time.time()) - silent_s) // step * step
    n = span_s // step
    first = end - step * n + 5
    per_post = max(1, points_per_post // max(1, len(spec)))  # the API takes 500,000 at most
    written = 0
    for k0 in range(0, n, per_post):
        body = batch(spec, first + step * k0, min(per_post, n - k0), step)
        if k0:
            for s in body:
                s["carry"] = [s["points"][0][0] - step, s["points"][0][1]]
        r = api.post_samples(token, host, body)
        assert r.status_code == 200, r.text
        written += r.json()["windows"]
    return written


def demo_fleet(api: LiveApi, span_s: int = 86400) -> list[str]:
    """Four hosts for screenshots and manual looks: two busy, one with GPUs, one silent."""
    hosts = [("web-01", 0, 0), ("web-02", 0, 0), ("gpu-01", 2, 0), ("db-01", 0, 900)]
    for i, (name, gpus, silent) in enumerate(hosts):
        write_host(api, name, host_series(i, gpus), span_s, silent_s=silent)
    return [h[0] for h in hosts]
