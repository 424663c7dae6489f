"""The simulated fleet: agents that each send one gzip batch per 30-s window, with retries.

Each simulated host sends, right after each 30-s window closes, one gzip batch of ``series`` x
30 points (1 Hz), every series with its carry, with its own agent token; a batch answered
429/503/5xx or not answered is resent, byte-identical, with backoff, until a 200 acknowledges it
(the agent's spool does the same). ``run_load`` returns what was acknowledged, for the
zero-loss check (harness.zeroloss).
"""

from __future__ import annotations

import gzip
import heapq
import http.client
import json
import math
import multiprocessing as mp
import queue
import random
import threading
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson

from harness.net import samples_headers

WINDOW = 30
CLOSE_DELAY = 0.2  # the agent cuts a window 0.2 s after it ends
RETRYABLE = {429, 500, 502, 503, 504}


@dataclass(frozen=True)
class LoadConfig:
    """What one load run does; ``speed`` > 1 replays windows that lie in the recent past."""

    hosts: int = 500
    series: int = 40
    duration: float = 600.0  # seconds during which new windows close
    speed: float = 1.0  # 1 = real time, N = N windows per 30 s per host
    clients: int = 2  # client processes
    conns: int = 8  # sender threads (concurrent requests) per client process
    drain: float = 120.0  # seconds after ``duration`` to get every batch acknowledged
    backoff_cap: float = 8.0
    timeout: float = 30.0
    prefix: str = "load"


def host_name(prefix: str, h: int) -> str:
    """Host names shared by the token setup, the clients and the checks."""
    return f"{prefix}-{h:04d}"


def window_body(host: str, h: int, series: int, t0: int, first: bool) -> tuple[bytes, int]:
    """One window's gzip batch for one host (30 points per series at 1 Hz), and its samples."""
    out = []
    for s in range(series):
        base = (h * 7 + s * 3 + t0 // WINDOW) % 97
        pts = [[t0 + i, float((base + i) % 100)] for i in range(WINDOW)]
        item: dict[str, Any] = {
            "metric": f"sim.m{s % 10}",
            "tags": {"idx": str(s)},
            "unit": "W" if s == 0 else "percent",
            "points": pts,
        }
        if not first:
            prev = (h * 7 + s * 3 + (t0 - WINDOW) // WINDOW) % 97
            item["carry"] = [t0 - 1, float((prev + WINDOW - 1) % 100)]
        out.append(item)
    body = gzip.compress(orjson.dumps({"host": host, "series": out}), 1)
    return body, series * WINDOW


@dataclass
class _Host:
    idx: int
    name: str
    token: str
    pending: deque = field(default_factory=deque)  # (window start, body, samples, due)
    busy: bool = False  # a send or a backoff is under way
    failures: int = 0
    pos: int = 0  # index in this client's host list


class _Client:
    """One client process: a scheduler thread closes windows, sender threads deliver them."""

    def __init__(self, port: int, hosts: list[tuple[int, str]], cfg: LoadConfig, t_start: float):
        self.port = port
        self.cfg = cfg
        self.t_start = t_start
        self.hosts = [
            _Host(i, host_name(cfg.prefix, i), tok, pos=n) for n, (i, tok) in enumerate(hosts)
        ]
        self.ready: queue.Queue[_Host | None] = queue.Queue()
        self.heap: list[tuple[float, int, int, str]] = []  # (time, seq, host index, kind)
        self.lock = threading.Lock()
        self.seq = 0
        self.lat: list[float] = []  # seconds, 200 answers
        self.delay: list[float] = []  # window due -> acknowledged
        self.errors: dict[str, int] = {}
        self.acked = self.acked_batches = self.sent_samples = self.rejected = 0
        self.requests = 0
        self.step = WINDOW / cfg.speed
        if cfg.speed == 1:
            self.w0 = math.floor(t_start / WINDOW) * WINDOW - WINDOW  # first due at once
        else:  # far enough in the past that the last window is still closed at the end
            n = math.ceil(cfg.duration / self.step) + 2
            self.w0 = (math.floor(t_start / WINDOW) - n - 2) * WINDOW

    def _push(self, when: float, h: _Host, kind: str) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (when, self.seq, h.pos, kind))

    def due(self, h: _Host, k: int) -> float:
        """When window k of host h closes: real agents all at once; replays spread over a step."""
        if self.cfg.speed == 1:
            return self.w0 + (k + 1) * WINDOW + CLOSE_DELAY
        return self.t_start + k * self.step + self.step * h.idx / max(1, self.cfg.hosts)

    def run(self) -> dict:
        """Close windows on schedule until the end, then drain; this process's counts."""
        for h in self.hosts:
            self._push(self.due(h, 0), h, "w0")
        senders = [
            threading.Thread(target=self._sender, daemon=True) for _ in range(self.cfg.conns)
        ]
        for t in senders:
            t.start()
        end = self.t_start + self.cfg.duration
        give_up = end + self.cfg.drain
        while True:
            with self.lock:
                idle = not self.heap and all(not h.pending and not h.busy for h in self.hosts)
                top = self.heap[0] if self.heap else None
            now = time.time()
            if (idle and now >= end) or now >= give_up:
                break
            if top is None or top[0] > now:
                time.sleep(min(0.05, max(0.0, (top[0] - now) if top else 0.05)))
                continue
            with self.lock:
                when, _, hi, kind = heapq.heappop(self.heap)
                h = self.hosts[hi]
                if kind.startswith("w"):
                    k = int(kind[1:])
                    t0 = self.w0 + k * WINDOW
                    body, n = window_body(h.name, h.idx, self.cfg.series, t0, k == 0)
                    h.pending.append((t0, body, n, max(when, self.t_start)))
                    self.sent_samples += n
                    nxt = self.due(h, k + 1)
                    if nxt < end:
                        self._push(nxt, h, f"w{k + 1}")
                elif kind == "retry":
                    h.busy = False
                if h.pending and not h.busy:
                    h.busy = True
                    self.ready.put(h)
        for _ in senders:
            self.ready.put(None)
        for t in senders:
            t.join(self.cfg.timeout + 5)
        unacked = sum(len(h.pending) for h in self.hosts)
        return {
            "lat": self.lat,
            "delay": self.delay,
            "errors": self.errors,
            "acked": self.acked,
            "acked_batches": self.acked_batches,
            "sent_samples": self.sent_samples,
            "rejected": self.rejected,
            "requests": self.requests,
            "unacked_batches": unacked,
        }

    def _sender(self) -> None:
        rng = random.Random()
        conn: http.client.HTTPConnection | None = None
        while True:
            h = self.ready.get()
            if h is None:
                return
            _t0, body, n, due = h.pending[0]
            status, answer, retry_after = 0, b"", None
            t = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, self.cfg.timeout)
                conn.request("POST", "/api/v1/samples", body, samples_headers(h.token))
                r = conn.getresponse()
                answer = r.read()
                status, retry_after = r.status, r.getheader("Retry-After")
                if r.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                status = -1
                key = type(e).__name__
                if conn is not None:
                    conn.close()
                    conn = None
            spent = time.perf_counter() - t
            with self.lock:
                self.requests += 1
                if status == 200:
                    h.pending.popleft()
                    self.acked += orjson.loads(answer)["accepted"]
                    self.acked_batches += 1
                    self.lat.append(spent)
                    self.delay.append(time.time() - due)
                    h.failures = 0
                    if h.pending:
                        self.ready.put(h)
                    else:
                        h.busy = False
                    continue
                key = str(status) if status > 0 else key
                self.errors[key] = self.errors.get(key, 0) + 1
                if status > 0 and status not in RETRYABLE:
                    h.pending.popleft()  # refused for good: never counted as acknowledged
                    self.rejected += n
                    if h.pending:
                        self.ready.put(h)
                    else:
                        h.busy = False
                    continue
                h.failures += 1
                wait = min(self.cfg.backoff_cap, 0.25 * 2 ** min(h.failures - 1, 10))
                wait = wait / 2 + rng.uniform(0, wait / 2)
                if retry_after and retry_after.isdigit():
                    wait = max(wait, min(float(retry_after), self.cfg.backoff_cap))
                self._push(time.time() + wait, h, "retry")


def _client_main(port: int, hosts: list, cfg: LoadConfig, t_start: float, q: mp.Queue) -> None:
    q.put(_Client(port, hosts, cfg, t_start).run())


def create_tokens(url: str, prefix: str, hosts: int, admin: str) -> list[str]:
    """One agent token per simulated host, as an operator would create them."""
    p = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(p.hostname, p.port, timeout=30)
    out: list[str] = []
    while len(out) < hosts:
        conn.request(
            "POST",
            "/api/v1/tokens",
            json.dumps({"role": "agent", "host": host_name(prefix, len(out))}),
            {"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
        )
        r = conn.getresponse()
        data = r.read()
        if r.status == 429:  # the admin token is rate-limited like any other: wait as told
            time.sleep(float(r.getheader("Retry-After") or 1))
            continue
        if r.status != 201:
            raise RuntimeError(f"token for host {len(out)}: {r.status} {data[:200]!r}")
        out.append(json.loads(data)["token"])
        if r.will_close:
            conn.close()
            conn = http.client.HTTPConnection(p.hostname, p.port, timeout=30)
    return out


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(len(xs) * q))]


def run_load(url: str, tokens: list[str], cfg: LoadConfig) -> dict:
    """Drive the fleet from ``cfg.clients`` processes; merged counts and latency figures."""
    port = urllib.parse.urlsplit(url).port
    ctx = mp.get_context("fork")
    q: mp.Queue = ctx.Queue()
    t_start = time.time() + 0.5
    parts = [[(i, tokens[i]) for i in range(c, cfg.hosts, cfg.clients)] for c in range(cfg.clients)]
    procs = [
        ctx.Process(target=_client_main, args=(port, p, cfg, t_start, q), daemon=True)
        for p in parts
        if p
    ]
    for p in procs:
        p.start()
    results = [q.get(timeout=cfg.duration + cfg.drain + 120) for _ in procs]
    for p in procs:
        p.join(10)
    elapsed = time.time() - t_start
    lat = sorted(x for r in results for x in r["lat"])
    delay = sorted(x for r in results for x in r["delay"])
    errors: dict[str, int] = {}
    for r in results:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    out: dict[str, Any] = {
        k: sum(r[k] for r in results)
        for k in (
            "acked",
            "acked_batches",
            "sent_samples",
            "rejected",
            "requests",
            "unacked_batches",
        )
    }
    out.update(
        seconds=elapsed,
        errors=errors,
        error_count=sum(errors.values()),
        requests_per_s=out["acked_batches"] / elapsed,
        samples_per_s=out["acked"] / elapsed,
        p50_ms=1000 * _pct(lat, 0.5),
        p99_ms=1000 * _pct(lat, 0.99),
        max_ms=1000 * (lat[-1] if lat else float("nan")),
        delivery_p50_s=_pct(delay, 0.5),
        delivery_p99_s=_pct(delay, 0.99),
        delivery_max_s=delay[-1] if delay else float("nan"),
    )
    return out
