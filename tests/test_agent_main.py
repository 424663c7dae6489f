import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from agent.batcher import Batcher
from agent.runner import Runner
from agent.samples import Sample

REPO = Path(__file__).resolve().parent.parent


def test_agent_imports_neither_pandas_nor_numpy():
    code = (
        "import sys, agent, agent.__main__, agent.probe, agent.collectors;"
        "from agent.collectors import COLLECTORS, build, default_os_layer;"
        "from agent.config import load;"
        "cols = build(load(environ={}), default_os_layer());"
        "[c.collect() for c in cols];"
        "print(sorted(m for m in ('pandas', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_once_prints_one_round_as_json(agent_env, python):
    env = {**agent_env, "FLEETPULSE_COLLECTORS": "all"}
    out = subprocess.run(
        [python, "-m", "agent", "--once"], env=env, cwd=REPO, capture_output=True, text=True,
        timeout=30, check=True,
    )  # fmt: skip
    doc = json.loads(out.stdout)
    metrics = {s["metric"] for s in doc["samples"]}
    assert doc["host"] == "test-host"
    assert {"cpu.percent", "mem.used.bytes", "load.1m", "cpu.user.percent"} <= metrics
    assert any(s["tags"] == {"cpu": "0"} for s in doc["samples"] if s["metric"] == "cpu.percent")
    assert all(isinstance(s["value"], float | int) for s in doc["samples"])


def test_bad_config_exits_2(agent_env, python):
    env = {**agent_env, "FLEETPULSE_INTERVAL": "soon"}
    out = subprocess.run([python, "-m", "agent", "--once"], env=env, cwd=REPO, capture_output=True)
    assert out.returncode == 2 and b"interval" in out.stderr


class Ticker:
    name = "ticker"

    def __init__(self, clock):
        self.clock, self.stamps = clock, []

    def collect(self, now=None):
        self.stamps.append(now)
        return [Sample("t", {}, "", now, 1.0)]


def test_schedule_is_drift_free():
    import threading

    t = Ticker(time.time)
    r = Runner([t], Batcher("h", 30.0), None, None, interval=0.05)
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    started = time.monotonic()
    r.run(stop)
    n = len(t.stamps)
    assert 19 <= n <= 22
    # round k starts at start + k*interval: the k-th stamp is not late by a growing amount
    late = [s - (t.stamps[0] + k * 0.05) for k, s in enumerate(t.stamps)]
    assert max(late) < 0.03 and time.monotonic() - started < 1.3


def test_sigterm_flushes_the_open_window_to_the_spool(agent_env, python, closed_port_url):
    import sqlite3

    env = {**agent_env, "FLEETPULSE_URL": closed_port_url, "FLEETPULSE_WINDOW": "30"}
    p = subprocess.Popen([python, "-m", "agent"], env=env, cwd=REPO)
    time.sleep(1.5)
    os.kill(p.pid, signal.SIGTERM)
    assert p.wait(15) == 0
    db = sqlite3.connect(Path(env["FLEETPULSE_SPOOL_DIR"]) / "spool.db")
    assert db.execute("SELECT COUNT(*) FROM batches").fetchone()[0] >= 1
