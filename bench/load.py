"""Sustained load and faults: simulated agents against a real gunicorn, then a zero-loss check.

    python bench/load.py                                  # 500 hosts x 40 series, 10 min, SQLite
    python bench/load.py --duration 60 --speed 10         # 10x real time (timestamps in the past)
    python bench/load.py --fault worker-kill              # SIGKILL a gunicorn worker mid-load
    python bench/load.py --store influxdb --fault influx-restart   # needs influxd on PATH
    python bench/load.py --fault agent-outage --outage 300         # the real agent, 5-min outage

Each simulated host sends, right after each 30-s window closes, one gzip batch of 40 series x
30 points (1 Hz), every series with its carry, with its own agent token; a batch answered
429/503/5xx or not answered is resent, byte-identical, with backoff, until a 200 acknowledges it
(the agent's spool does the same). Afterwards the stored ``count`` fields, summed over all
windows, must equal the samples acknowledged by 200 answers, exactly.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import heapq
import http.client
import http.server
import json
import math
import multiprocessing as mp
import os
import queue
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.ingest import ADMIN, free_port, samples_headers, start_api, stop_api  # noqa: E402

WINDOW = 30
CLOSE_DELAY = 0.2  # the agent cuts a window 0.2 s after it ends
RETRYABLE = {429, 500, 502, 503, 504}


# ---- the simulated fleet --------------------------------------------------------------------


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


def create_tokens(url: str, prefix: str, hosts: int, admin: str = ADMIN) -> list[str]:
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


# ---- the server's memory --------------------------------------------------------------------


class RssSampler:
    """Sums the RSS of the gunicorn master and its workers every few seconds, in a thread."""

    def __init__(self, master_pid: int, every: float = 2.0) -> None:
        self.master = psutil.Process(master_pid)
        self.every = every
        self.samples: list[tuple[float, float, int]] = []  # (t, MiB, processes)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def _one(self) -> None:
        total, n = 0, 0
        with contextlib.suppress(psutil.Error):
            for p in [self.master, *self.master.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
                    n += 1
        self.samples.append((time.time(), total / 2**20, n))

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self._one()

    def __enter__(self) -> RssSampler:
        self._one()
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join(5)
        self._one()

    def summary(self, warmup: float) -> dict:
        """First, after warm-up, peak and last sums; growth after warm-up over 10% is flagged."""
        t0 = self.samples[0][0]
        after = [s for s in self.samples if s[0] - t0 >= warmup] or self.samples[-1:]
        warm, last = after[0][1], self.samples[-1][1]
        growth = (last - warm) / warm if warm else 0.0
        return {
            "rss_first_mib": self.samples[0][1],
            "rss_warm_mib": warm,
            "rss_peak_mib": max(s[1] for s in after),
            "rss_last_mib": last,
            "rss_growth": growth,
            "rss_growth_flag": growth > 0.10,
            "rss_series": [(round(t - t0, 1), round(m, 1), n) for t, m, n in self.samples],
        }


def worker_pids(master_pid: int) -> list[int]:
    """The gunicorn workers now running under the master."""
    with contextlib.suppress(psutil.Error):
        return sorted(p.pid for p in psutil.Process(master_pid).children())
    return []


def kill_influxd(influxd: Any) -> None:
    """SIGKILL the fixture's influxd (no flush: a crash, not a shutdown); .start() revives it."""
    os.killpg(influxd.proc.pid, signal.SIGKILL)
    influxd.proc.wait(10)


# ---- what was stored ------------------------------------------------------------------------


def stored_sqlite(db_path: str | Path, host_like: str = "%") -> dict:
    """Sum, number and largest of the 30-s windows' counts, and the integrity check's answer."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        total, rows, top = con.execute(
            "SELECT COALESCE(SUM(w.count), 0), COUNT(*), COALESCE(MAX(w.count), 0) FROM w30 w "
            "JOIN series s ON s.id = w.series_id WHERE s.host LIKE ?",
            (host_like,),
        ).fetchone()
        check = con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()
    return {"sum": total, "windows": rows, "max_count": top, "integrity": check}


def influx_query(http_url: str, db: str, q: str) -> list[dict]:
    """InfluxQL through influxd's own HTTP /query (not through the API)."""
    url = f"{http_url}/query?" + urllib.parse.urlencode({"db": db, "q": q})
    with urllib.request.urlopen(url, timeout=60) as r:
        data = json.loads(r.read())
    out = []
    for res in data.get("results", []):
        if "error" in res:
            raise RuntimeError(res["error"])
        out.extend(res.get("series", []))
    return out


def stored_influx(storage_url: str) -> dict:
    """The same figures as stored_sqlite from the 30-s retention policy of an influxdb:// URL."""
    p = urllib.parse.urlsplit(storage_url)
    http_url, db = f"http://{p.hostname}:{p.port}", p.path.strip("/")
    total = top = rows = 0
    for s in influx_query(http_url, db, 'SELECT sum("count") FROM "rp_30s"./.*/'):
        total += int(s["values"][0][1] or 0)
    for s in influx_query(http_url, db, 'SELECT max("count") FROM "rp_30s"./.*/'):
        top = max(top, int(s["values"][0][1] or 0))
    for s in influx_query(http_url, db, 'SELECT count("count") FROM "rp_30s"./.*/'):
        rows += int(s["values"][0][1] or 0)
    return {"sum": total, "windows": rows, "max_count": top, "integrity": "n/a"}


# ---- the agent's network, cut and restored ---------------------------------------------------


class RecordingProxy:
    """An HTTP forwarder on a fixed port that can be closed (connection refused) and reopened.

    It records every request answered 200, so the test knows exactly what was acknowledged.
    """

    def __init__(self, upstream: str, port: int | None = None) -> None:
        self.upstream = urllib.parse.urlsplit(upstream)
        self.port = port or free_port()
        self.acked: list[tuple[bytes, dict]] = []  # (request body, answer) of each 200
        self.statuses: dict[int, int] = {}
        self.upstream_errors: list[str] = []  # why a 502 was answered, for the failure report
        self.lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def open(self) -> None:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection: a cut is a cut

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                up = http.client.HTTPConnection(
                    proxy.upstream.hostname, proxy.upstream.port, timeout=60
                )
                try:
                    up.request("POST", self.path, body, dict(self.headers))
                    r = up.getresponse()
                    data = r.read()
                except (OSError, http.client.HTTPException) as e:
                    with proxy.lock:  # say so, as a gateway would, and let the agent retry
                        proxy.statuses[502] = proxy.statuses.get(502, 0) + 1
                        proxy.upstream_errors.append(repr(e))
                    self.send_error(502, f"upstream: {e!r}")
                    return
                finally:
                    up.close()
                with proxy.lock:
                    proxy.statuses[r.status] = proxy.statuses.get(r.status, 0) + 1
                    if r.status == 200:
                        proxy.acked.append((body, json.loads(data)))
                self.send_response(r.status)
                for k in ("Content-Type", "Retry-After"):
                    if r.getheader(k):
                        self.send_header(k, r.getheader(k))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def acked_samples(self) -> tuple[set[tuple[str, str, str, float]], int]:
        """Distinct (host, metric, tags, ts) acknowledged, and the sum of the 200s' accepted."""
        from app.storage.registry import tags_json

        seen: set[tuple[str, str, str, float]] = set()
        accepted = 0
        with self.lock:
            items = list(self.acked)
        for body, answer in items:
            doc = json.loads(gzip.decompress(body))
            accepted += answer["accepted"]
            for s in doc["series"]:
                tags = tags_json(tuple(sorted((s.get("tags") or {}).items())))
                for ts, _v in s["points"]:
                    seen.add((doc["host"], s["metric"], tags, float(ts)))
        return seen, accepted


def per_window(samples: set[tuple[str, str, str, float]]) -> dict[tuple[str, str, str, int], int]:
    """Expected ``count`` of each (host, metric, tags, window label) from distinct samples."""
    out: dict[tuple[str, str, str, int], int] = {}
    for host, metric, tags, ts in samples:
        k = (host, metric, tags, int(math.floor(ts / WINDOW) * WINDOW + WINDOW))
        out[k] = out.get(k, 0) + 1
    return out


def stored_windows_sqlite(db_path: str | Path, host: str) -> dict[tuple[str, str, str, int], int]:
    """Stored ``count`` of each window of one host with at least one sample of its own."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        rows = con.execute(
            "SELECT s.host, s.metric, s.tags, w.t, w.count FROM w30 w "
            "JOIN series s ON s.id = w.series_id WHERE s.host = ? AND w.count > 0",
            (host,),
        ).fetchall()
    finally:
        con.close()
    return {(h, m, t, int(lbl)): int(c) for h, m, t, lbl, c in rows}


def start_agent(
    url: str, token: str, host: str, spool: Path, log: Path, interval: float = 0.5, window: int = 10
) -> subprocess.Popen:
    """The real ``python -m agent`` with a short interval and batch window (tests' settings)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "FLEETPULSE_URL": url,
        "FLEETPULSE_TOKEN": token,
        "FLEETPULSE_HOST": host,
        "FLEETPULSE_INTERVAL": str(interval),
        "FLEETPULSE_WINDOW": str(window),
        "FLEETPULSE_COLLECTORS": "cpu,memory",
        "FLEETPULSE_SPOOL_DIR": str(spool),
        "FLEETPULSE_TIMEOUT": "5",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "agent"],
        cwd=ROOT,
        env=env,
        stderr=log.open("ab"),
        stdout=log.open("ab"),
    )


def agent_outage(
    api_url: str,
    admin: str,
    db_path: Path,
    work: Path,
    outage: float,
    kill_at: float,
    after: float = 120.0,
    window: int = 10,
    interval: float = 0.5,
) -> dict:
    """Agent through a proxy; the proxy closes for ``outage`` s; SIGKILL + restart at ``kill_at``.

    Returns what the proxy saw acknowledged and what the store holds, per window.
    """
    host = "outage-" + str(os.getpid())
    req = urllib.request.Request(
        api_url + "/api/v1/tokens",
        json.dumps({"role": "agent", "host": host}).encode(),
        {"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        token = json.loads(r.read())["token"]
    proxy = RecordingProxy(api_url)
    proxy.open()
    spool, log = work / "spool", work / "agent.log"
    agent = start_agent(proxy.url, token, host, spool, log, interval, window)
    t: dict[str, float] = {}
    try:
        deadline = time.time() + window * 3 + 40
        while not proxy.acked and time.time() < deadline:  # one batch delivered first
            time.sleep(0.2)
        if not proxy.acked:
            raise RuntimeError(
                f"nothing acknowledged {proxy.statuses} {proxy.upstream_errors[:3]}: "
                f"{log.read_text()[-3000:]}"
            )
        t["cut"] = time.time()
        proxy.close()
        time.sleep(kill_at)
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        t["killed"] = time.time()
        agent = start_agent(proxy.url, token, host, spool, log, interval, window)
        time.sleep(max(0.0, t["cut"] + outage - time.time()))
        proxy.open()
        t["restored"] = time.time()
        # delivered again once a batch from after the restore is acknowledged (oldest first)
        deadline = time.time() + after
        while time.time() < deadline:
            with proxy.lock:
                last = proxy.acked[-1][0] if proxy.acked else None
            newest = max(p[0] for s in json.loads(gzip.decompress(last))["series"]
                         for p in s["points"]) if last else 0  # fmt: skip
            if newest > t["restored"] + window:
                break
            time.sleep(0.5)
        t["caught_up"] = time.time()
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
        proxy.close()
    samples, accepted = proxy.acked_samples()
    expected = per_window(samples)
    stored = stored_windows_sqlite(db_path, host) if db_path else {}
    outage_samples = sum(1 for s in samples if t["cut"] <= s[3] < t["killed"] - window)
    by_series: dict[tuple[str, str], list[float]] = {}
    for _h, metric, tags, ts in samples:
        by_series.setdefault((metric, tags), []).append(ts)
    gaps = [float(g) for v in by_series.values() for g in np.diff(sorted(v))]
    return {
        "host": host,
        "times": {k: round(v - t["cut"], 1) for k, v in t.items()},
        "acked_distinct": len(samples),
        "acked_accepted_sum": accepted,
        "acked_in_outage_before_kill": outage_samples,
        "max_gap_s": round(max(gaps, default=0.0), 1),  # the open window lost to SIGKILL
        "stored_sum": sum(stored.values()),
        "windows_equal": expected == stored,
        "missing": {k: v for k, v in expected.items() if stored.get(k) != v},
        "extra": {k: v for k, v in stored.items() if expected.get(k) != v},
        "statuses": dict(proxy.statuses),
        "log_tail": log.read_text()[-1500:],
    }


# ---- the command line -----------------------------------------------------------------------


def _fmt(name: str, r: dict) -> str:
    return (
        f"{name}: {r['requests_per_s']:.1f} req/s, {r['samples_per_s']:,.0f} samples/s, "
        f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.0f} ms, "
        f"{r['error_count']} errors {r['errors']}, delivery p99 {r['delivery_p99_s']:.1f} s; "
        f"acked {r['acked']:,} in {r['acked_batches']:,} batches, unacked {r['unacked_batches']}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", choices=["sqlite", "influxdb"], default="sqlite")
    p.add_argument("--storage-url", help="use this influxdb:// URL instead of starting influxd")
    p.add_argument("--hosts", type=int, default=500)
    p.add_argument("--series", type=int, default=40)
    p.add_argument("--duration", type=float, default=600.0)
    p.add_argument("--speed", type=float, default=1.0, help="windows per 30 s per host")
    p.add_argument("--workers", type=int, default=(os.cpu_count() or 1) + 1)
    p.add_argument("--clients", type=int, default=2, help="client processes")
    p.add_argument("--conns", type=int, default=8, help="concurrent requests per client")
    p.add_argument("--warmup", type=float, default=60.0, help="RSS baseline after this many s")
    p.add_argument(
        "--fault", choices=["none", "worker-kill", "influx-restart", "agent-outage"], default="none"
    )
    p.add_argument("--fault-at", type=float, default=None, help="seconds into the run")
    p.add_argument("--outage", type=float, default=300.0, help="agent-outage / influx down, s")
    p.add_argument("--json", help="write the full result here")
    args = p.parse_args()
    if args.fault == "agent-outage" and args.store != "sqlite":
        p.error("--fault agent-outage compares windows in the SQLite store: use --store sqlite")
    if args.fault == "influx-restart" and (args.store != "influxdb" or args.storage_url):
        p.error("--fault influx-restart needs --store influxdb with the bench's own influxd")
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        influxd = None
        if args.store == "sqlite":
            url, db = f"sqlite:///{work}/load.db", work / "load.db"
        elif args.storage_url:
            url, db = args.storage_url, None
        else:
            from tests.influx_fixtures import Influxd

            (work / "influxd").mkdir()
            influxd = Influxd(work / "influxd", shutil.which("influxd") or "influxd")
            influxd.start()
            url, db = influxd.new_db_url(), None
        proc, port = start_api(url, work, args.workers)
        api = f"http://127.0.0.1:{port}"
        try:
            if args.fault == "agent-outage":
                # the real agent's settings: 1-s samples, 30-s batches, its own backoff (cap 300 s)
                res = agent_outage(api, ADMIN, db, work, args.outage, args.outage / 3, 420, 30, 1.0)
                res.pop("log_tail")
                print(json.dumps(res, indent=1, default=str))
                ok = res["windows_equal"] and res["stored_sum"] == res["acked_distinct"]
                sys.exit(0 if ok else 1)
            cfg = LoadConfig(
                hosts=args.hosts,
                series=args.series,
                duration=args.duration,
                speed=args.speed,
                clients=args.clients,
                conns=args.conns,
            )
            tokens = create_tokens(api, cfg.prefix, cfg.hosts)
            box: dict = {}
            th = threading.Thread(target=lambda: box.update(run_load(api, tokens, cfg)))
            with RssSampler(proc.pid, 5.0) as rss:
                th.start()
                fault_at = args.fault_at if args.fault_at is not None else args.duration / 3
                if args.fault != "none":
                    time.sleep(fault_at)
                    if args.fault == "worker-kill":
                        before = worker_pids(proc.pid)
                        os.kill(before[0], signal.SIGKILL)
                        killed = time.time()
                        while time.time() < killed + 60:
                            now = worker_pids(proc.pid)
                            if len(now) == len(before) and before[0] not in now:
                                break
                            time.sleep(0.1)
                        res_kill = f"{before} -> {now} in {time.time() - killed:.1f} s"
                        print(f"killed worker {before[0]}: {res_kill}", flush=True)
                    elif influxd is not None:
                        kill_influxd(influxd)
                        print("influxd killed (SIGKILL)", flush=True)
                        time.sleep(min(args.outage, args.duration / 3))
                        influxd.start()
                        print("influxd started", flush=True)
                th.join()
            res = box
            res.update(rss.summary(args.warmup))
            stored = stored_sqlite(db) if db else stored_influx(url)
            res["stored"] = stored
            res["zero_loss"] = (
                stored["sum"] == res["acked"]
                and stored["max_count"] == WINDOW
                and stored["windows"] == res["acked_batches"] * cfg.series
                and res["unacked_batches"] == 0
            )
            print(_fmt(f"{args.store} {args.fault}", res))
            flag = " FLAG" if res["rss_growth_flag"] else ""
            print(
                f"RSS MiB: first {res['rss_first_mib']:.0f}, after warm-up "
                f"{res['rss_warm_mib']:.0f}, peak {res['rss_peak_mib']:.0f}, last "
                f"{res['rss_last_mib']:.0f} (growth {100 * res['rss_growth']:+.1f}%{flag})"
            )
            print(f"stored {stored}; zero loss: {res['zero_loss']}")
            if args.json:
                Path(args.json).write_text(json.dumps(res, indent=1, default=str))
        finally:
            stop_api(proc)
            if influxd is not None:
                influxd.stop()
    sys.exit(0 if res.get("zero_loss") or res.get("windows_equal") else 1)


if __name__ == "__main__":
    main()
