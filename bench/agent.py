"""Agent figures: RSS and CPU of the real agent process, collection-round latency, baselines.

    python bench/agent.py [--seconds 60] [--trees 10] [--write-readme]

It spawns `--trees` process trees (`sh -c "sleep & sleep & wait"`: 3 processes each), runs the
agent with every collector on at a 1-s interval watching those trees, sending to a local HTTP
sink, and measures over `--seconds`: its RSS, its CPU percent of one core, and the p50/p99 time
of each collection round (system collectors and process collectors separately). The agent is
the real one (`agent.__main__.run`) started by TIMED_AGENT below, which wraps each collector in
a timer: the timing lives here, not in the agent. In the same run it measures, on the same
trees, the bare psutil loop calling `children(recursive=True)` per watched process, and a loop
that reads the process table once per round. Last, the cost of `tracemalloc` to a host program
(the probe turns it on).
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

BEGIN, END = "<!-- agent:begin -->", "<!-- agent:end -->"


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


class Sink(http.server.BaseHTTPRequestHandler):
    """Accepts every batch, like a healthy API."""

    protocol_version = "HTTP/1.1"
    batches = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Sink.batches += 1
        data = b'{"accepted":1,"windows":1}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def spawn_trees(n: int) -> list[subprocess.Popen]:
    """n shell trees of 3 processes each, in their own sessions so they die together."""
    return [
        subprocess.Popen(["sh", "-c", "sleep 3600 & sleep 3600 & wait"], start_new_session=True)
        for _ in range(n)
    ]


# The agent's own entry (`agent.__main__.run`) with every collector wrapped in a timer; it
# imports nothing the agent does not, so its RSS is the agent's. argv[1]: the timings file.
TIMED_AGENT = """
import json, logging, sys, time
from agent import collectors as registry
from agent.__main__ import run
from agent.config import load
from agent.spool import Spool


class Timed:
    def __init__(self, inner, rounds):
        self.inner, self.rounds = inner, rounds
        self.name, self.metrics, self.enabled = inner.name, inner.metrics, inner.enabled

    def collect(self, now=None):
        start = time.perf_counter()
        try:
            return self.inner.collect(now)
        finally:  # one row per round (the runner gives every collector the same now)
            row = self.rounds.setdefault(now, [0.0, 0.0])
            row[self.name == "processes"] += (time.perf_counter() - start) * 1000

    def close(self):
        self.inner.close()


journal_ms = []
if hasattr(Spool, "journal"):  # the per-round journal write, timed where the tree has one
    untimed = Spool.journal

    def journal(self, *args, **kw):
        start = time.perf_counter()
        try:
            return untimed(self, *args, **kw)
        finally:
            journal_ms.append((time.perf_counter() - start) * 1000)

    Spool.journal = journal

cfg = load()
logging.basicConfig(level=cfg.log_level, stream=sys.stderr)
rounds = {}
code = run(cfg, [Timed(c, rounds) for c in registry.build(cfg, registry.default_os_layer(cfg))])
with open(sys.argv[1], "w") as fh:
    json.dump({"rounds": list(rounds.values()), "journal_ms": journal_ms}, fh)
sys.exit(code)
"""


def run_agent(seconds: float, trees: list[subprocess.Popen], tmp: Path, url: str) -> dict:
    """Start the agent, let it warm up, measure RSS and CPU, stop it, read its round timings."""
    timings = tmp / "timings.json"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLEETPULSE_")},
        "PYTHONPATH": str(REPO),
        "FLEETPULSE_URL": url,
        "FLEETPULSE_TOKEN": "bench",
        "FLEETPULSE_INTERVAL": "1",
        "FLEETPULSE_SPOOL_DIR": str(tmp / "spool"),
        "FLEETPULSE_WATCH": ",".join(f"tree{i}=pid:{p.pid}" for i, p in enumerate(trees)),
        "FLEETPULSE_COLLECTORS": "all",
        "FLEETPULSE_LOG_LEVEL": "WARNING",
    }
    agent = subprocess.Popen([sys.executable, "-c", TIMED_AGENT, str(timings)], cwd=REPO, env=env)
    proc = psutil.Process(agent.pid)
    time.sleep(3.0)  # imports, first rounds
    rss: list[int] = []
    t0, c0 = time.monotonic(), proc.cpu_times()
    end = t0 + seconds
    while time.monotonic() < end:
        rss.append(proc.memory_info().rss)
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))
    t1, c1 = time.monotonic(), proc.cpu_times()
    rss.append(proc.memory_info().rss)
    uss = proc.memory_full_info().uss
    agent.send_signal(signal.SIGTERM)
    agent.wait(30)
    timed = json.loads(timings.read_text())
    rounds, journal_ms = timed["rounds"], timed["journal_ms"][2:]
    rounds = rounds[2:]  # the first rounds pay for lazy set-up (mount list, process table)
    sys_ms = [r[0] for r in rounds]
    proc_ms = [r[1] for r in rounds]
    cpu = (c1.user + c1.system - c0.user - c0.system) / (t1 - t0) * 100
    return {
        "rss_mb": max(rss) / 2**20,
        "rss_mean_mb": statistics.mean(rss) / 2**20,
        "uss_mb": uss / 2**20,
        "cpu_pct": cpu,
        "rounds": len(rounds),
        "sys_p50": pct(sys_ms, 50),
        "sys_p99": pct(sys_ms, 99),
        "proc_p50": pct(proc_ms, 50),
        "proc_p99": pct(proc_ms, 99),
        "total_p99": pct([a + b for a, b in zip(sys_ms, proc_ms, strict=True)], 99),
        "journal_p50": pct(journal_ms, 50) if journal_ms else None,
        "journal_p99": pct(journal_ms, 99) if journal_ms else None,
    }


def bare_children_loop(pids: list[int], rounds: int, gap: float) -> list[float]:
    """The earlier probe's way: children(recursive=True) per watched process, every round."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for pid in pids:
            root = psutil.Process(pid)
            total_rss, total_cpu = 0, 0.0
            for p in [root, *root.children(recursive=True)]:
                with p.oneshot():
                    total_rss += p.memory_info().rss
                    t = p.cpu_times()
                    total_cpu += t.user + t.system
        times.append((time.perf_counter() - start) * 1000)
        time.sleep(gap)
    return times


def table_once_loop(pids: list[int], rounds: int, gap: float) -> list[float]:
    """Better: one process-table read per round for all watched trees."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        children: dict[int, list[int]] = {}
        for p in psutil.process_iter(["ppid"]):
            children.setdefault(p.info["ppid"], []).append(p.pid)
        for pid in pids:
            stack, total_rss = [pid], 0
            while stack:
                cur = stack.pop()
                stack.extend(children.get(cur, ()))
                try:
                    p = psutil.Process(cur)
                    with p.oneshot():
                        total_rss += p.memory_info().rss
                        p.cpu_times()
                except psutil.NoSuchProcess:
                    pass
        times.append((time.perf_counter() - start) * 1000)
        time.sleep(gap)
    return times


def collector_loop(pids: list[int], rounds: int, gap: float) -> list[float]:
    """The agent's ProcessCollector in this process: one table pass per 10 rounds, as at 1 s."""
    from agent.collectors.processes import ProcessCollector
    from agent.config import parse_watch

    watch = parse_watch(",".join(f"t{i}=pid:{p}" for i, p in enumerate(pids)))
    c = ProcessCollector(psutil, watch, refresh_s=gap * 10 * 0.999)
    c.collect()
    times = []
    for _ in range(rounds):
        time.sleep(gap)
        start = time.perf_counter()
        c.collect()
        times.append((time.perf_counter() - start) * 1000)
    return times


WORKLOAD = """
import hashlib, json, time, tracemalloc, sys
if sys.argv[1] == "on":
    tracemalloc.start(int(sys.argv[2]))
own = 0
def alloc():
    global own
    rows = [{"id": i, "name": "row%d" % i, "tags": [i, str(i)]} for i in range(200_000)]
    back = json.loads(json.dumps(rows))
    if tracemalloc.is_tracing():
        own = max(own, tracemalloc.get_tracemalloc_memory())
    return len(back)
def compute():
    h = hashlib.sha256()
    block = b"x" * (1 << 20)
    for _ in range(300):
        h.update(block)
    return h.hexdigest()
work = alloc if sys.argv[3] == "alloc" else compute
best = float("inf")
for _ in range(3):
    t0 = time.perf_counter()
    work()
    best = min(best, time.perf_counter() - t0)
rss = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024
print(json.dumps({"seconds": best, "tracemalloc_bytes": own, "peak_rss": rss}))
"""


def tracemalloc_cost() -> dict:
    """An allocation-heavy workload with tracemalloc off, on with 1 frame, on with 25."""
    out = {}
    for kind in ("alloc", "compute"):
        for label, args in (("off", ["off", "1"]), ("on1", ["on", "1"]), ("on25", ["on", "25"])):
            res = subprocess.run(
                [sys.executable, "-c", WORKLOAD, *args, kind],
                capture_output=True,
                text=True,
                check=True,
            )
            out[kind, label] = json.loads(res.stdout)
    return out


def render(a: dict, bare: list[float], once: list[float], mine: list[float], tm: dict,
           seconds: float, ntrees: int) -> str:  # fmt: skip
    """The markdown section for bench/README.md."""
    lines = [
        f"Measured by `python bench/agent.py --seconds {seconds:g}` on this machine "
        f"({os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB, Linux "
        f"{os.uname().release}), {time.strftime('%Y-%m-%d', time.gmtime())}. No GPU here and "
        "no GPU machine was lent to this task: the GPU collector is switched off (no NVIDIA "
        "driver), so pynvml is not even imported; the GPU code is tested with a fake NVML "
        "only. The RAPL power zone is absent in this VM too.",
        "",
        f"The agent: a real agent subprocess (`agent.__main__.run`, collectors timed by this "
        f"script), every collector on, 1-s interval, watching {ntrees} process trees (`sh` + "
        f"2 `sleep` each, {ntrees * 3} processes), to a local HTTP sink; {a['rounds']} rounds.",
        "",
        "| | RSS | CPU (% of one core) | p50 / p99 per collection round |",
        "| --- | --- | --- | --- |",
        f"| **fleetpulse agent** | **{a['rss_mb']:.1f} MB** (USS {a['uss_mb']:.1f} MB) | "
        f"**{a['cpu_pct']:.2f}%** | system collectors {a['sys_p50']:.2f} / "
        f"{a['sys_p99']:.2f} ms; process collector {a['proc_p50']:.2f} / "
        f"{a['proc_p99']:.2f} ms; both {a['total_p99']:.2f} ms p99 |",
        "| target | < 25 MB | < 1% | < 5 ms p99 with 10 watched processes |",
        "| Glances 4.5 at 1 s (issue's baseline) | 34.5 MB | 1.7% | 29 ms p99 |",
        "| node_exporter scraped every 1 s (issue's baseline) | 20 MB | 1.0% | - |",
        "| probe/exporter seeds | 56 MB | - | 12 ms p99 (process metrics) |",
        "",
        f"The per-round journal write (SQLite, synchronous=NORMAL), timed in the same agent: "
        f"{a['journal_p50'] or 0:.2f} ms p50 / {a['journal_p99'] or 0:.2f} ms p99.",
        "",
        f"Process-tree collection alone, {ntrees} trees, measured in this same run "
        f"({len(bare)} rounds each, in the bench process):",
        "",
        "| method | p50 | p99 |",
        "| --- | --- | --- |",
        f"| bare psutil: `children(recursive=True)` per watched process | "
        f"{pct(bare, 50):.2f} ms | {pct(bare, 99):.2f} ms |",
        f"| psutil: process table read once per round | {pct(once, 50):.2f} ms | "
        f"{pct(once, 99):.2f} ms |",
        f"| agent `ProcessCollector` (the watched processes' /proc stat and statm kept open and "
        f"re-read with pread; the process table re-read in slices, one pass per 10 rounds) | "
        f"{pct(mine, 50):.2f} ms | {pct(mine, 99):.2f} ms |",
        "",
        "Cost of `tracemalloc` to a host program (the in-process probe starts it with 1 frame "
        "unless it is already on; `probe.start(..., trace_frames=0)` leaves it off). Two "
        "workloads in a fresh interpreter, best of 3: *alloc* builds 200,000 small dicts, "
        "dumps them to JSON and parses them back (the worst case: every object is traced); "
        "*compute* hashes 300 MB with hashlib (work in C, few Python allocations, like a "
        "training step running in a native library):",
        "",
        "| workload | tracemalloc | time | slowdown | tracemalloc's own memory (peak) | "
        "process peak RSS |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for kind in ("alloc", "compute"):
        off = tm[kind, "off"]["seconds"]
        for label, name in (("off", "off"), ("on1", "on, 1 frame"), ("on25", "on, 25 frames")):
            r = tm[kind, label]
            lines.append(
                f"| {kind} | {name} | {r['seconds']:.3f} s | "
                f"{(r['seconds'] / off - 1) * 100:+.0f}% | "
                f"{r['tracemalloc_bytes'] / 2**20:.1f} MB | {r['peak_rss'] / 2**20:.0f} MB |"
            )
    return "\n".join(lines)


def write_readme(section: str) -> None:
    """Replace only the agent's section of bench/README.md."""
    path = REPO / "bench" / "README.md"
    text = path.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{section}\n{END}{tail}")


def main() -> None:
    """Run everything and print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--trees", type=int, default=10)
    ap.add_argument("--write-readme", action="store_true", help="update bench/README.md")
    ap.add_argument("--agent-only", action="store_true", help="only the agent subprocess: JSON")
    args = ap.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    trees = spawn_trees(args.trees)
    try:
        time.sleep(0.5)
        with tempfile.TemporaryDirectory() as tmp:
            agent = run_agent(args.seconds, trees, Path(tmp), url)
        if args.agent_only:
            print(json.dumps(agent))
            return
        pids = [p.pid for p in trees]
        n = max(30, int(args.seconds))
        bare = bare_children_loop(pids, n, 0.05)
        once = table_once_loop(pids, n, 0.05)
        mine = collector_loop(pids, n, 0.05)
    finally:
        for p in trees:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        server.shutdown()
    tm = tracemalloc_cost()
    section = render(agent, bare, once, mine, tm, args.seconds, args.trees)
    print(section)
    print(f"\n(sink received {Sink.batches} batch(es))")
    if args.write_readme:
        write_readme(section)


if __name__ == "__main__":
    main()
