"""The web page's reads through a real gunicorn: what a host's page costs the server.

    python bench/page_reads.py --store sqlite      # or: make bench-page (both stores)
    python bench/page_reads.py --store influxdb    # a real influxd (Debian's 1.6.7)

One host with 40 series (10 metrics x 4 tag sets, one metric in W) and 7 days of 30-second
windows, written through the API; then the 30-minute job, run as the server's slots would run
it until no late-marked window is left (one run recomputes a bounded batch, and 7 days written
at once are all late), so week-long reads meet the steady state: the stored 30-minute series.
Then, over keep-alive HTTP:

- one series over 24 h at 30 s (2,880 windows), many times: p50 / p99 (target p99 < 50 ms);
- the host page's reads as the page makes them (GET /hosts/H, one /series per metric with the
  page's resolution, /energy) for 24 h (5-minute windows) and 7 days (30-minute windows): the
  sum of the request times one after another (target for 7 days < 300 ms), and the wall time
  with the page's 6 calls in flight.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.web import create_app  # noqa: E402
from harness.demo import write_host  # noqa: E402
from harness.influxd import Influxd  # noqa: E402
from harness.server import LiveApi, start_gunicorn, stop_gunicorn  # noqa: E402

HOST = "page-bench"
METRICS = 10
TAGS = 4  # 40 series
DAY = 86400
PAGES = {"24h": (DAY, "5m"), "7d": (7 * DAY, "30m")}  # what the page asks for (host.js)
ENV = {"FLEETPULSE_LOG_LEVEL": "WARNING", "FLEETPULSE_RATE_LIMIT": "0", "FLEETPULSE_JOBS": "0"}


def spec() -> list[tuple[str, dict, str, float, float]]:
    """40 series: 10 metrics of 4 tag sets; the first metric's unit is W (energy is read)."""
    return [
        (f"bench.page_{m}", {"idx": str(t)}, "W" if m == 0 else "percent", 50.0 + t, 20.0)
        for m in range(METRICS)
        for t in range(TAGS)
    ]


class Reader:
    """One keep-alive connection with the reader token; each GET timed."""

    def __init__(self, api: LiveApi, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=60)
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path: str, **params: str) -> float:
        """Seconds for one GET (the answer read in full and checked)."""
        t = time.perf_counter()
        self.conn.request(
            "GET", f"{path}?{urlencode(params)}" if params else path, None, self.headers
        )
        resp = self.conn.getresponse()
        body = resp.read()
        elapsed = time.perf_counter() - t
        if resp.status != 200:
            raise RuntimeError(f"{path} {params}: {resp.status} {body[:300]!r}")
        return elapsed


def page_calls(span: int, res: str) -> list[tuple[str, dict]]:
    """The host page's calls for one range: state, one series read per metric, energy."""
    end = int(time.time()) // 1800 * 1800 + 1800
    q = {"host": HOST, "start": str(end - span), "end": str(end), "resolution": res}
    calls = [(f"/api/v1/hosts/{HOST}", {})]
    calls += [("/api/v1/series", {**q, "metric": f"bench.page_{m}"}) for m in range(METRICS)]
    return [*calls, ("/api/v1/energy", q)]


def pct(xs: list[float], q: float) -> float:
    """The q-quantile of ``xs``, in milliseconds."""
    xs = sorted(xs)
    return 1000 * xs[min(len(xs) - 1, int(q * len(xs)))]


def one_series(api: LiveApi, token: str, repeat: int) -> dict:
    """One series over 24 h at 30 s (2,880 windows), ``repeat`` times."""
    r = Reader(api, token)
    end = int(time.time()) // 30 * 30
    q = {"host": HOST, "metric": "bench.page_1", "tag.idx": "0", "resolution": "30s"}
    q |= {"start": str(end - DAY), "end": str(end)}
    for _ in range(5):
        r.get("/api/v1/series", **q)
    times = [r.get("/api/v1/series", **q) for _ in range(repeat)]
    return {"p50_ms": pct(times, 0.5), "p99_ms": pct(times, 0.99), "n": repeat}


def host_page(api: LiveApi, token: str, span: int, res: str, repeat: int) -> dict:
    """The page's reads for one range: sum of sequential times, and wall time 6 in flight."""
    calls = page_calls(span, res)
    seq = Reader(api, token)
    readers = [Reader(api, token) for _ in range(6)]
    sums, walls = [], []
    for _ in range(repeat + 2):
        sums.append(sum(seq.get(p, **q) for p, q in calls))
        t = time.perf_counter()
        with ThreadPoolExecutor(6) as pool:  # as the page's pool: 6 connections, 6 in flight
            list(pool.map(lambda k: [readers[k].get(p, **q) for p, q in calls[k::6]], range(6)))
        walls.append(time.perf_counter() - t)
    sums, walls = sums[2:], walls[2:]  # the first two warm the caches
    return {
        "calls": len(calls),
        "sequential_p50_ms": 1000 * statistics.median(sums),
        "sequential_max_ms": 1000 * max(sums),
        "parallel6_p50_ms": 1000 * statistics.median(walls),
        "parallel6_max_ms": 1000 * max(walls),
    }


def fill(api: LiveApi, storage_url: str, work: Path) -> float:
    """7 days of the 40 series through the API, then the 30-minute job; seconds taken."""
    t = time.perf_counter()
    # inside the 30-s series' 7-day retention; 6 h per POST (influxd takes 25 MB per write)
    write_host(api, HOST, spec(), 7 * DAY - 3600, points_per_post=720 * len(spec()))
    app = create_app(
        {"storage_url": storage_url, "metadata_path": str(work / "meta.db"), "jobs": False}
    )
    store = app.extensions["fleetpulse"].store
    # one run recomputes a bounded batch of late-marked windows (7 days written at once are all
    # late): run it as the server's slots would, until none is left, so reads meet the steady state
    for _ in range(200):
        if store.run_jobs(time.time())["late"] == 0:
            break
    store.close()
    return time.perf_counter() - t


def run(store: str, work: Path, repeat: int) -> dict:
    """Start the store and gunicorn, fill, measure; every process stopped after."""
    influxd = None
    if store == "influxdb":
        (work / "influxd").mkdir()
        influxd = Influxd(work / "influxd")
        influxd.start()
        url = influxd.new_db_url()
    else:
        url = f"sqlite:///{work}/page.db"
    api = start_gunicorn(work, workers=2, env_extra=ENV, storage_url=url, admin="bench-admin")
    try:
        out = {"store": store, "fill_s": fill(api, url, work)}
        token = api.token_for("reader")
        out["one_series_24h_30s"] = one_series(api, token, repeat * 10)
        for name, (span, res) in PAGES.items():
            out[f"host_page_{name}_{res}"] = host_page(api, token, span, res, repeat)
        return out
    finally:
        stop_gunicorn(api.proc)
        if influxd is not None:
            influxd.stop()


def main() -> None:
    """Parse, run, print the figures (and JSON for the record)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", choices=["sqlite", "influxdb"], default="sqlite")
    p.add_argument("--repeat", type=int, default=20, help="page loads per range (x10 one-series)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="fp-page-bench-") as d:
        out = run(args.store, Path(d), args.repeat)
    s = out["one_series_24h_30s"]
    print(
        f"store {out['store']}: 40 series x 7 days written and rolled up in {out['fill_s']:.1f} s"
    )
    print(
        f"one series, 24 h at 30 s (2,880 windows), {s['n']} reads: p50 {s['p50_ms']:.1f} ms, "
        f"p99 {s['p99_ms']:.1f} ms (target p99 < 50 ms)"
    )
    for name, (_, res) in PAGES.items():
        h = out[f"host_page_{name}_{res}"]
        print(
            f"host page {name} at {res} ({h['calls']} calls): one after another p50 "
            f"{h['sequential_p50_ms']:.0f} ms (max {h['sequential_max_ms']:.0f}); 6 in flight "
            f"p50 {h['parallel6_p50_ms']:.0f} ms (max {h['parallel6_max_ms']:.0f})"
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
