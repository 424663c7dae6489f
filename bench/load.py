"""Sustained load and faults: simulated agents against a real gunicorn, then a zero-loss check.

    python bench/load.py                                  # 500 hosts x 40 series, 10 min, SQLite
    python bench/load.py --duration 60 --speed 10         # 10x real time (timestamps in the past)
    python bench/load.py --fault worker-kill              # SIGKILL a gunicorn worker mid-load
    python bench/load.py --store influxdb --fault influx-restart   # needs influxd on PATH
    python bench/load.py --store influxdb --fault postgres-restart # metadata on PostgreSQL
    python bench/load.py --fault agent-outage --outage 300         # the real agent, 5-min outage

Each simulated host sends, right after each 30-s window closes, one gzip batch of 40 series x
30 points (1 Hz), every series with its carry, with its own agent token; a batch answered
429/503/5xx or not answered is resent, byte-identical, with backoff, until a 200 acknowledges it
(the agent's spool does the same). Afterwards the stored ``count`` fields, summed over all
windows, must equal the samples acknowledged by 200 answers, exactly.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.ingest import ADMIN, BENCH_ENV  # noqa: E402
from harness.fleet import WINDOW, LoadConfig, create_tokens, run_load  # noqa: E402
from harness.influxd import Influxd, kill_influxd  # noqa: E402
from harness.outage import agent_outage  # noqa: E402
from harness.postgres import Postgres  # noqa: E402
from harness.procs import RssSampler, worker_pids  # noqa: E402
from harness.server import LiveApi, start_gunicorn, stop_gunicorn  # noqa: E402
from harness.zeroloss import stored_influx, stored_sqlite  # noqa: E402

FAULTS = ["none", "worker-kill", "influx-restart", "postgres-restart", "agent-outage"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (``make bench-load``, ``make bench-faults``), checked for coherence."""
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
    p.add_argument("--fault", choices=FAULTS, default="none")
    p.add_argument("--fault-at", type=float, default=None, help="seconds into the run")
    p.add_argument("--outage", type=float, default=300.0, help="agent-outage / influx down, s")
    p.add_argument("--json", help="write the full result here")
    args = p.parse_args(argv)
    if args.fault == "agent-outage" and args.store != "sqlite":
        p.error("--fault agent-outage compares windows in the SQLite store: use --store sqlite")
    if args.fault == "influx-restart" and (args.store != "influxdb" or args.storage_url):
        p.error("--fault influx-restart needs --store influxdb with the bench's own influxd")
    if args.fault == "postgres-restart" and args.store != "influxdb":
        p.error("--fault postgres-restart needs --store influxdb (PostgreSQL metadata)")
    return args


# ---- the faults --------------------------------------------------------------------------------


def kill_a_worker(master_pid: int) -> None:
    """SIGKILL one gunicorn worker and report how long the master takes to replace it."""
    before = worker_pids(master_pid)
    os.kill(before[0], signal.SIGKILL)
    killed = time.time()
    while time.time() < killed + 60:
        now = worker_pids(master_pid)
        if len(now) == len(before) and before[0] not in now:
            break
        time.sleep(0.1)
    res_kill = f"{before} -> {now} in {time.time() - killed:.1f} s"
    print(f"killed worker {before[0]}: {res_kill}", flush=True)


def restart_influxd(influxd: Influxd, down: float) -> None:
    """SIGKILL influxd (a crash, no flush), leave it down ``down`` s, start it again."""
    kill_influxd(influxd)
    print("influxd killed (SIGKILL)", flush=True)
    time.sleep(down)
    influxd.start()
    print("influxd started", flush=True)


def restart_postgres(pg: Postgres, down: float) -> None:
    """SIGKILL PostgreSQL (a crash, recovered from its WAL), leave it down, start it again."""
    pg.kill()
    print("postgres killed (SIGKILL)", flush=True)
    time.sleep(down)
    pg.start()
    print("postgres started", flush=True)


def inject_fault(
    args: argparse.Namespace, master_pid: int, influxd: Influxd | None, pg: Postgres | None = None
) -> None:
    """At ``--fault-at`` (default a third in), the chosen fault; none for ``--fault none``."""
    fault_at = args.fault_at if args.fault_at is not None else args.duration / 3
    if args.fault == "none":
        return
    time.sleep(fault_at)
    if args.fault == "worker-kill":
        kill_a_worker(master_pid)
    elif pg is not None:
        restart_postgres(pg, min(args.outage, args.duration / 3))
    elif influxd is not None:
        restart_influxd(influxd, min(args.outage, args.duration / 3))


# ---- one run -----------------------------------------------------------------------------------


def _fmt(name: str, r: dict) -> str:
    """The one-line summary of a load run."""
    return (
        f"{name}: {r['requests_per_s']:.1f} req/s, {r['samples_per_s']:,.0f} samples/s, "
        f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.0f} ms, "
        f"{r['error_count']} errors {r['errors']}, delivery p99 {r['delivery_p99_s']:.1f} s; "
        f"acked {r['acked']:,} in {r['acked_batches']:,} batches, unacked {r['unacked_batches']}"
    )


def run_agent_outage(args: argparse.Namespace, api: LiveApi, db: Path | None, work: Path) -> bool:
    """The real agent's settings: 1-s samples, 30-s batches, its own backoff (cap 300 s)."""
    res = agent_outage(api.url, ADMIN, db, work, args.outage, args.outage / 3, 420, 30, 1.0)
    res.pop("log_tail")
    print(json.dumps(res, indent=1, default=str))
    return res["windows_equal"] and res["stored_sum"] == res["acked_distinct"]


def load_under_fault(
    args: argparse.Namespace,
    api: LiveApi,
    url: str,
    db: Path | None,
    influxd: Influxd | None,
    pg: Postgres | None = None,
) -> dict:
    """The fleet against the API with RSS sampled and the fault injected; then the stored check."""
    cfg = LoadConfig(
        hosts=args.hosts,
        series=args.series,
        duration=args.duration,
        speed=args.speed,
        clients=args.clients,
        conns=args.conns,
    )
    tokens = create_tokens(api.url, cfg.prefix, cfg.hosts, ADMIN)
    res: dict = {}
    th = threading.Thread(target=lambda: res.update(run_load(api.url, tokens, cfg)))
    with RssSampler(api.proc.pid, 5.0) as rss:
        th.start()
        inject_fault(args, api.proc.pid, influxd, pg)
        th.join()
    res.update(rss.summary(args.warmup))
    stored = stored_sqlite(db) if db else stored_influx(url)
    res["stored"] = stored
    res["zero_loss"] = (
        stored["sum"] == res["acked"]
        and stored["max_count"] == WINDOW
        and stored["windows"] == res["acked_batches"] * cfg.series
        and res["unacked_batches"] == 0
    )
    return res


def report(args: argparse.Namespace, res: dict) -> None:
    """Print the run's figures (and write them all with ``--json``)."""
    print(_fmt(f"{args.store} {args.fault}", res))
    flag = " FLAG" if res["rss_growth_flag"] else ""
    print(
        f"RSS MiB: first {res['rss_first_mib']:.0f}, after warm-up "
        f"{res['rss_warm_mib']:.0f}, peak {res['rss_peak_mib']:.0f}, last "
        f"{res['rss_last_mib']:.0f} (growth {100 * res['rss_growth']:+.1f}%{flag})"
    )
    print(f"stored {res['stored']}; zero loss: {res['zero_loss']}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))


def main() -> None:
    """Start the store and gunicorn, run the load or the agent outage, exit 1 on any loss."""
    args = parse_args()
    ok = False
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        influxd = None
        if args.store == "sqlite":
            url, db = f"sqlite:///{work}/load.db", work / "load.db"
        elif args.storage_url:
            url, db = args.storage_url, None
        else:
            (work / "influxd").mkdir()
            influxd = Influxd(work / "influxd", shutil.which("influxd") or "influxd")
            influxd.start()
            url, db = influxd.new_db_url(), None
        pg = Postgres() if args.fault == "postgres-restart" else None
        env = {**BENCH_ENV, "FLEETPULSE_METADATA_URL": pg.new_db_url()} if pg else BENCH_ENV
        api = start_gunicorn(work, args.workers, env_extra=env, storage_url=url, admin=ADMIN)
        try:
            if args.fault == "agent-outage":
                ok = run_agent_outage(args, api, db, work)
            else:
                res = load_under_fault(args, api, url, db, influxd, pg)
                report(args, res)
                ok = bool(res["zero_loss"])
        finally:
            stop_gunicorn(api.proc)
            if influxd is not None:
                influxd.stop()
            if pg is not None:
                pg.close()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
