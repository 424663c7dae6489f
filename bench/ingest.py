"""Ingest throughput: realistic batches POSTed through a real gunicorn from a separate process.

    python bench/ingest.py --store sqlite [--hosts 200 --series 40 --samples 30 --windows 3]
    python bench/ingest.py --store influxdb   # also measures direct raw line-protocol writes
    python bench/ingest.py --store influxdb --nodes 2   # two gunicorns, one metadata location
    python bench/ingest.py --store influxdb --nodes 2 --metadata-url postgres   # ... on PostgreSQL

Prints samples/s accepted and p50/p99 request latency (and, for InfluxDB, the baseline).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import http.client
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness.net import samples_headers  # noqa: E402
from harness.server import LiveApi, start_gunicorn, stop_gunicorn  # noqa: E402

ADMIN = "bench-admin"
# rate limiting off: a bench token is far busier than any agent's
BENCH_ENV = {"FLEETPULSE_LOG_LEVEL": "WARNING", "FLEETPULSE_RATE_LIMIT": "0"}


def start_api(
    storage_url: str, workdir: Path, workers: int, admin: str = ADMIN, env: dict | None = None
) -> LiveApi:
    """gunicorn -c gunicorn.conf.py, as users start it (harness.server), quiet, no rate limit."""
    return start_gunicorn(
        workdir,
        workers,
        env_extra={**BENCH_ENV, **(env or {})},
        storage_url=storage_url,
        admin=admin,
    )


def start_nodes(storage_url: str, workdir: Path, args: argparse.Namespace) -> list[LiveApi]:
    """``args.nodes`` gunicorns on their own ports and work dirs, sharing one metadata location
    (tokens, registry, high-water marks, write locks), as several API nodes serve one store."""
    url = args.metadata_url or f"sqlite:///{workdir / 'meta.db'}"
    env = {"FLEETPULSE_METADATA_URL": url}
    nodes: list[LiveApi] = []
    try:
        for k in range(args.nodes):
            d = workdir / f"node{k}"
            d.mkdir(exist_ok=True)
            nodes.append(start_api(storage_url, d, args.workers, env=env))
    except BaseException:
        for n in nodes:
            stop_gunicorn(n.proc)
        raise
    return nodes


def make_bodies(hosts: int, series: int, samples: int, windows: int, t_start: int) -> list:
    """One gzipped batch per host and 30-s window, as the agent sends them (with carries)."""
    out = []
    for w in range(windows):
        t0 = t_start + 30 * w
        for h in range(hosts):
            ss = []
            for s in range(series):
                base = (h * 7 + s * 3) % 100
                pts = [[t0 + k * 30 / samples, float((base + k) % 100)] for k in range(samples)]
                item = {
                    "metric": f"bench.metric_{s % 10}",
                    "tags": {"idx": str(s)},
                    "unit": "W" if s == 0 else "percent",
                    "points": pts,
                }
                if w:
                    item["carry"] = [t0 - 30 / samples, float((base + samples - 1) % 100)]
                ss.append(item)
            body = gzip.compress(json.dumps({"host": f"bench-{h:04d}", "series": ss}).encode(), 1)
            out.append((h, body))
    return out


def _client(port: int, jobs: list, tokens: list, q: mp.Queue) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    lat, bad, accepted = [], 0, 0
    for h, body in jobs:
        t = time.perf_counter()
        conn.request("POST", "/api/v1/samples", body, samples_headers(tokens[h]))
        r = conn.getresponse()
        data = r.read()
        lat.append(time.perf_counter() - t)
        if r.status == 200:
            accepted += json.loads(data)["accepted"]
        else:
            bad += 1
    q.put((lat, bad, accepted))


def fan_out(target, arg_lists: list[tuple]) -> tuple[list, float]:
    """Run ``target(*args, queue)`` in one process per args; their results and the wall time."""
    q: mp.Queue = mp.Queue()
    procs = [mp.Process(target=target, args=(*a, q)) for a in arg_lists]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join()
    return results, elapsed


def drive(ports: int | list[int], bodies: list, tokens: list, clients: int) -> dict:
    """Send every body from ``clients`` processes with keep-alive connections; time it all.
    With several ``ports`` (nodes), client i talks to node i mod n."""
    ports = [ports] if isinstance(ports, int) else ports
    results, elapsed = fan_out(
        _client,
        [(ports[i % len(ports)], bodies[i::clients], tokens) for i in range(clients)],
    )
    lat = sorted(x for r in results for x in r[0])
    accepted = sum(r[2] for r in results)
    return {
        "requests": len(lat),
        "errors": sum(r[1] for r in results),
        "accepted": accepted,
        "seconds": elapsed,
        "samples_per_s": accepted / elapsed,
        "requests_per_s": len(lat) / elapsed,
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
    }


def create_tokens(port: int, hosts: int) -> list[str]:
    """One agent token per bench host, as an operator would create them."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = []
    for h in range(hosts):
        conn.request(
            "POST",
            "/api/v1/tokens",
            json.dumps({"role": "agent", "host": f"bench-{h:04d}"}),
            {"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
        )
        r = conn.getresponse()
        out.append(json.loads(r.read())["token"])
    return out


def run_api_bench(storage_url: str, workdir: Path, args: argparse.Namespace) -> dict:
    """The API path: gunicorn (``args.nodes`` of them) + the given store, batches from
    separate client processes spread over the nodes."""
    nodes = start_nodes(storage_url, workdir, args)
    ports = [n.port for n in nodes]
    try:
        tokens = create_tokens(ports[0], args.hosts)  # one metadata: valid on every node
        t_start = (int(time.time()) // 30 - args.windows - 2) * 30
        bodies = make_bodies(args.hosts, args.series, args.samples, args.windows, t_start)
        warm = make_bodies(min(args.hosts, 20), args.series, args.samples, 1, t_start - 600)
        drive(ports, warm, tokens, args.clients)
        return drive(ports, bodies, tokens, args.clients)
    finally:
        for n in nodes:
            stop_gunicorn(n.proc)


def main() -> None:
    """Run the chosen store's bench in a temp dir and print its figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", choices=["sqlite", "influxdb"], default="sqlite")
    p.add_argument("--hosts", type=int, default=200)
    p.add_argument("--series", type=int, default=40)
    p.add_argument("--samples", type=int, default=30)
    p.add_argument("--windows", type=int, default=3, help="30-s batches per host")
    p.add_argument("--workers", type=int, default=(os.cpu_count() or 1) + 1)
    p.add_argument("--clients", type=int, default=4, help="client processes")
    p.add_argument("--nodes", type=int, default=1, help="gunicorn API nodes (separate ports)")
    p.add_argument(
        "--metadata-url",
        default="",
        help="metadata shared by the nodes (default: sqlite:///TMP/meta.db; 'postgres': start "
        "a real PostgreSQL in the temp dir, as harness/postgres.py does for the tests)",
    )
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as d, contextlib.ExitStack() as stack:
        work = Path(d)
        if args.metadata_url == "postgres":
            from harness.postgres import Postgres

            pg = Postgres()
            stack.callback(pg.close)
            args.metadata_url = pg.new_db_url()
        if args.store == "sqlite":
            res = run_api_bench(f"sqlite:///{work}/bench.db", work, args)
            print_result("api -> sqlite", res)
        else:
            from bench.ingest_influx import run_influx_bench

            run_influx_bench(args, work, run_api_bench, print_result)


def print_result(name: str, r: dict) -> None:
    """One line per measured path, comparable across runs."""
    print(
        f"{name}: {r['samples_per_s']:,.0f} samples/s accepted, {r['requests_per_s']:.1f} req/s, "
        f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms "
        f"({r['accepted']:,} samples in {r['requests']} requests, {r['errors']} errors, "
        f"{r['seconds']:.1f} s)"
    )


if __name__ == "__main__":
    main()
