"""The real agent behind a proxy that cuts its network, SIGKILLed and restarted meanwhile."""

from __future__ import annotations

import gzip
import http.client
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

from harness.net import free_port
from harness.server import ROOT
from harness.zeroloss import per_window, stored_windows_sqlite


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
        """Where the agent is pointed instead of the API."""
        return f"http://127.0.0.1:{self.port}"

    def open(self) -> None:
        """Listen (again) on the same port: the agent's network is back."""
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
        """Stop listening: the agent's connections are refused, as with its network down."""
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


def _agent_token(api_url: str, admin: str, host: str) -> str:
    """An agent token for the outage's host, created as an operator would."""
    req = urllib.request.Request(
        api_url + "/api/v1/tokens",
        json.dumps({"role": "agent", "host": host}).encode(),
        {"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())["token"]


def _wait_first_ack(proxy: RecordingProxy, log: Path, window: int) -> None:
    """One batch delivered before the cut, else the run proves nothing: fail with the log."""
    deadline = time.time() + window * 3 + 40
    while not proxy.acked and time.time() < deadline:
        time.sleep(0.2)
    if not proxy.acked:
        raise RuntimeError(
            f"nothing acknowledged {proxy.statuses} {proxy.upstream_errors[:3]}: "
            f"{log.read_text()[-3000:]}"
        )


def _wait_caught_up(proxy: RecordingProxy, restored: float, window: int, after: float) -> None:
    """Delivered again once a batch from after the restore is acknowledged (oldest first)."""
    deadline = time.time() + after
    while time.time() < deadline:
        with proxy.lock:
            last = proxy.acked[-1][0] if proxy.acked else None
        newest = max(p[0] for s in json.loads(gzip.decompress(last))["series"]
                     for p in s["points"]) if last else 0  # fmt: skip
        if newest > restored + window:
            break
        time.sleep(0.5)


def _outage_report(
    host: str, t: dict[str, float], proxy: RecordingProxy, db_path: Path | None, window: int
) -> dict:
    """What the proxy saw acknowledged against what the store holds, per window."""
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
    }


def agent_outage(
    api_url: str,
    admin: str,
    db_path: Path | None,
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
    token = _agent_token(api_url, admin, host)
    proxy = RecordingProxy(api_url)
    proxy.open()
    spool, log = work / "spool", work / "agent.log"
    agent = start_agent(proxy.url, token, host, spool, log, interval, window)
    t: dict[str, float] = {}
    try:
        _wait_first_ack(proxy, log, window)
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
        _wait_caught_up(proxy, t["restored"], window, after)
        t["caught_up"] = time.time()
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
        proxy.close()
    return {**_outage_report(host, t, proxy, db_path, window), "log_tail": log.read_text()[-1500:]}
