"""``bench/ingest.py --store influxdb``: a real influxd, the API path into it, and the baseline.

The baseline ("send raw points") writes the very samples the API bench sends, one line per
sample, straight to the same influxd as line protocol in batches of 5,000, from the same
number of client processes over keep-alive connections. The API path POSTs them through
gunicorn, which aggregates them into 30-second windows before writing.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import os
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import requests

from bench import ingest
from harness.influxd import Influxd

RAW_BATCH = 5000


def raw_bodies(hosts: int, series: int, samples: int, windows: int, t_start: int) -> list[bytes]:
    """The API bench's samples as line protocol (ms timestamps), 5,000 lines per body."""
    lines = []
    for w in range(windows):
        t0 = t_start + 30 * w
        for h in range(hosts):
            for s in range(series):
                base = (h * 7 + s * 3) % 100
                key = f"bench.metric_{s % 10},host=bench-{h:04d},idx={s}"
                for k in range(samples):
                    ts_ms = round((t0 + k * 30 / samples) * 1000)
                    lines.append(f"{key} value={float((base + k) % 100)!r} {ts_ms}\n")
    return ["".join(lines[i : i + RAW_BATCH]).encode() for i in range(0, len(lines), RAW_BATCH)]


def _raw_client(port: int, path: str, bodies: list[bytes], q: mp.Queue) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    lat, bad = [], 0
    for body in bodies:
        t = time.perf_counter()
        conn.request("POST", path, body, {"Content-Type": "text/plain"})
        r = conn.getresponse()
        data = r.read()
        lat.append(time.perf_counter() - t)
        if r.status != 204:
            bad += 1
            if bad == 1:
                print(f"raw write answered {r.status}: {data[:200]!r}")
    q.put((lat, bad))


def run_raw_baseline(server: Influxd, db: str, args: argparse.Namespace) -> dict:
    """Direct line-protocol writes of the same samples, batches of 5,000, ``clients`` processes."""
    server.query(f'CREATE DATABASE "{db}" WITH DURATION 168h REPLICATION 1 NAME "rp_raw"')
    t_start = (int(time.time()) // 30 - args.windows - 2) * 30
    bodies = raw_bodies(args.hosts, args.series, args.samples, args.windows, t_start)
    samples = args.hosts * args.series * args.samples * args.windows
    path = "/write?" + urlencode({"db": db, "precision": "ms"})
    results, elapsed = ingest.fan_out(
        _raw_client, [(server.port, path, bodies[i :: args.clients]) for i in range(args.clients)]
    )
    lat = sorted(x for r in results for x in r[0])
    return {
        "requests": len(lat),
        "errors": sum(r[1] for r in results),
        "accepted": samples * (len(lat) - sum(r[1] for r in results)) // max(len(lat), 1),
        "seconds": elapsed,
        "samples_per_s": samples
        * (len(lat) - sum(r[1] for r in results))
        / max(len(lat), 1)
        / elapsed,
        "requests_per_s": len(lat) / elapsed,
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc), to split the work."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_calls(server: Influxd) -> int:
    """How many /write calls influxd has served (its own counter, /debug/vars)."""
    stats = requests.get(server.http_url + "/debug/vars", timeout=10).json()
    return sum(v["values"].get("writeReq", 0) for k, v in stats.items() if k.startswith("httpd"))


def with_influxd_cpu(server: Influxd, run: Callable[[], dict]) -> dict:
    """``run()``'s result with influxd's CPU microseconds per accepted sample during it, and
    its /write calls per request (below 1 on the API path: requests shared writes)."""
    before, calls = cpu_seconds(server.proc.pid), write_calls(server)
    res = run()
    used = cpu_seconds(server.proc.pid) - before
    res["influxd_us_per_sample"] = 1e6 * used / max(res["accepted"], 1)
    res["writes_per_request"] = (write_calls(server) - calls) / max(res["requests"], 1)
    return res


def run_influx_bench(
    args: argparse.Namespace,
    work: Path,
    run_api_bench: Callable[[str, Path, argparse.Namespace], dict],
    print_result: Callable[[str, dict], None],
) -> dict:
    """Start influxd in ``work``, measure the raw baseline, the API path, the baseline again."""
    d = work / "influxd"
    d.mkdir()
    server = Influxd(d)
    server.start()
    try:
        url = f"influxdb://127.0.0.1:{server.port}/fleetpulse"
        before = with_influxd_cpu(server, lambda: run_raw_baseline(server, "raw_before", args))
        print_result("raw line protocol -> influxd (before)", before)
        api = with_influxd_cpu(server, lambda: run_api_bench(url, work, args))
        print_result(f"api -> influxdb ({args.nodes} node(s))", api)
        after = with_influxd_cpu(server, lambda: run_raw_baseline(server, "raw_after", args))
        print_result("raw line protocol -> influxd (after)", after)
    finally:
        server.stop()
    baseline = (before["samples_per_s"] + after["samples_per_s"]) / 2
    ratio = api["samples_per_s"] / baseline
    print(
        f"api {api['samples_per_s']:,.0f} samples/s vs raw baseline {baseline:,.0f} samples/s "
        f"(mean of before/after): ratio {ratio:.2f} (target >= 1.00); influxd CPU per sample: "
        f"api {api['influxd_us_per_sample']:.2f} us, raw {before['influxd_us_per_sample']:.2f} / "
        f"{after['influxd_us_per_sample']:.2f} us; influxd /write calls per API request "
        f"{api['writes_per_request']:.2f}; load average {os.getloadavg()[0]:.2f}"
    )
    return {"api": api, "raw_before": before, "raw_after": after, "ratio": ratio}
