"""Line-protocol ingest against the JSON path, through a real gunicorn, in the same run.

    python bench/line_protocol.py --store sqlite|influxdb [--hosts 20 --requests 5]

Each request is Telegraf-shaped: 1,000 lines of 10 fields (100 tag sets x 10 timestamps, 1 s
apart), gzip, `Authorization: Token T`, to `/api/v2/write`. The JSON path gets the very same
samples (1,000 series x 10 points per request, with carries) for other hosts. Prints samples/s
of both and the ratio (target: line protocol >= 0.5x JSON).
"""

from __future__ import annotations

import argparse
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

from bench import ingest  # noqa: E402
from harness.influxd import Influxd  # noqa: E402
from harness.net import samples_headers  # noqa: E402

FIELDS = [f"usage_{k}" for k in range(10)]
TAGSETS, STEPS = 100, 10


def value(h: int, tag: int, f: int, k: int) -> float:
    return float((h * 7 + tag * 3 + f + k) % 100) + 0.25


def lp_body(host: str, h: int, t0: int) -> bytes:
    """1,000 lines of 10 fields, ns timestamps, gzip."""
    lines = []
    for k in range(STEPS):
        ns = (t0 + k) * 1_000_000_000
        for tag in range(TAGSETS):
            fields = ",".join(f"{f}={value(h, tag, i, k)!r}" for i, f in enumerate(FIELDS))
            lines.append(f"cpu,host={host},cpu=cpu{tag} {fields} {ns}\n")
    return gzip.compress("".join(lines).encode(), 1)


def json_body(host: str, h: int, t0: int, first: bool) -> bytes:
    """The same samples as JSON: one series per (tag set, field), 10 points, with carries."""
    series = []
    for tag in range(TAGSETS):
        for i, f in enumerate(FIELDS):
            item = {
                "metric": f"cpu.{f}",
                "tags": {"cpu": f"cpu{tag}"},
                "points": [[t0 + k, value(h, tag, i, k)] for k in range(STEPS)],
            }
            if not first:
                item["carry"] = [t0 - 1, value(h, tag, i, STEPS - 1)]
            series.append(item)
    return gzip.compress(json.dumps({"host": host, "series": series}).encode(), 1)


def _client(port: int, jobs: list, q: mp.Queue) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    lat, bad = [], 0
    for path, headers, body in jobs:
        t = time.perf_counter()
        conn.request("POST", path, body, headers)
        r = conn.getresponse()
        data = r.read()
        lat.append(time.perf_counter() - t)
        if r.status not in (200, 204):
            bad += 1
            if bad == 1:
                print(f"{path} answered {r.status}: {data[:300]!r}")
    q.put((lat, bad))


def drive(port: int, jobs: list, clients: int) -> dict:
    """Every job from ``clients`` processes; samples/s counts only answered-OK requests."""
    results, elapsed = ingest.fan_out(_client, [(port, jobs[i::clients]) for i in range(clients)])
    lat = sorted(x for r in results for x in r[0])
    ok = len(lat) - sum(r[1] for r in results)
    return {
        "samples_per_s": ok * TAGSETS * STEPS * len(FIELDS) / elapsed,
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "errors": len(lat) - ok,
        "seconds": elapsed,
    }


def jobs(kind: str, tokens: dict[str, str], hosts: int, requests: int, t_start: int) -> list:
    out = []
    for r in range(requests):
        t0 = t_start + STEPS * r
        for h in range(hosts):
            host = f"{kind}-{h:04d}"
            if kind == "lp":
                headers = {"Authorization": f"Token {tokens[host]}", "Content-Encoding": "gzip"}
                out.append(("/api/v2/write?org=o&bucket=b", headers, lp_body(host, h, t0)))
            else:
                body = json_body(host, h, t0, r == 0)
                out.append(("/api/v1/samples", samples_headers(tokens[host]), body))
    return out


def run(storage_url: str, work: Path, args: argparse.Namespace) -> dict[str, dict]:
    api = ingest.start_api(storage_url, work, args.workers)
    try:
        tokens = {}
        for kind in ("json", "lp"):
            for h in range(args.hosts):
                host = f"{kind}-{h:04d}"
                tokens[host] = api.token_for("agent", host)
        t_start = int(time.time()) - STEPS * args.requests - 120
        got = {}
        for kind in ("json", "lp", "json", "lp"):  # alternate, keep the better of two
            work_jobs = jobs(kind, tokens, args.hosts, args.requests, t_start)
            r = drive(api.port, work_jobs, args.clients)
            if kind not in got or r["samples_per_s"] > got[kind]["samples_per_s"]:
                got[kind] = r
            t_start -= 10 * STEPS * args.requests  # the second round writes older, other windows
        return got
    finally:
        ingest.stop_gunicorn(api.proc)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", choices=["sqlite", "influxdb"], default="sqlite")
    p.add_argument("--hosts", type=int, default=20)
    p.add_argument("--requests", type=int, default=5, help="requests per host")
    p.add_argument("--workers", type=int, default=(os.cpu_count() or 1) + 1)
    p.add_argument("--clients", type=int, default=4)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        if args.store == "sqlite":
            got = run(f"sqlite:///{work}/bench.db", work, args)
        else:
            (work / "influxd").mkdir()
            server = Influxd(work / "influxd")
            server.start()
            try:
                got = run(server.new_db_url(), work, args)
            finally:
                server.stop()
    for kind, r in got.items():
        print(
            f"{args.store} {kind:4s}: {r['samples_per_s']:>10,.0f} samples/s, p50 {r['p50_ms']:.0f}"
            f" ms, p99 {r['p99_ms']:.0f} ms, {r['errors']} errors ({r['seconds']:.1f} s)"
        )
    ratio = got["lp"]["samples_per_s"] / got["json"]["samples_per_s"]
    print(f"{args.store} line protocol / JSON: x{ratio:.2f} (target >= 0.5)")


if __name__ == "__main__":
    main()
