"""The agent process end to end: one agent per spool, and a stop that loses no sample."""

import gzip
import json
import os
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def wait_for_lock(spool: Path, pid: int, timeout: float = 15.0) -> None:
    """Until the agent `pid` holds the spool (it writes its pid into the lock file)."""
    deadline = time.monotonic() + timeout
    lock = spool / "agent.lock"
    while time.monotonic() < deadline:
        if lock.exists() and lock.read_text().strip() == str(pid):
            return
        time.sleep(0.05)
    raise AssertionError(f"agent {pid} never took {spool}")


def test_a_second_agent_on_the_same_spool_refuses_and_a_killed_one_does_not_block(
    agent_env, python, closed_port_url, tmp_path
):
    env = {**agent_env, "FLEETPULSE_URL": closed_port_url}
    spool = Path(env["FLEETPULSE_SPOOL_DIR"])
    first = subprocess.Popen([python, "-m", "agent"], env=env, cwd=REPO)
    try:
        wait_for_lock(spool, first.pid)
        second = subprocess.run(
            [python, "-m", "agent"], env=env, cwd=REPO, capture_output=True, text=True, timeout=30
        )
        assert second.returncode == 3, second.stderr
        (line,) = second.stderr.strip().splitlines()  # one clear message, nothing else
        assert str(spool) in line and "in use" in line and f"pid {first.pid}" in line
        assert first.poll() is None  # the first one is untouched
    finally:
        first.kill()  # SIGKILL: no clean-up; the kernel drops its lock
        first.wait()
    third = subprocess.Popen(
        [python, "-m", "agent"], env=env, cwd=REPO, stderr=subprocess.PIPE, text=True
    )
    wait_for_lock(spool, third.pid)
    third.send_signal(signal.SIGTERM)
    _, err = third.communicate(timeout=30)
    assert third.returncode == 0, err
    assert "in use" not in err


def spooled_bodies(spool: Path) -> list[bytes]:
    db = sqlite3.connect(spool / "spool.db")
    try:
        return [row[0] for row in db.execute("SELECT body FROM batches")]
    finally:
        db.close()


@pytest.mark.parametrize(("signum", "api_up"), [(signal.SIGTERM, True), (signal.SIGINT, False)])
def test_a_stopped_agent_leaves_no_sample_unsent_or_unspooled(
    signum, api_up, agent_env, python, fake_api, closed_port_url, tmp_path
):
    url = fake_api.url if api_up else closed_port_url
    env = {**agent_env, "FLEETPULSE_URL": url, "FLEETPULSE_INTERVAL": "0.1"}
    spool = Path(env["FLEETPULSE_SPOOL_DIR"])
    with open(tmp_path / "agent.log", "w") as log_file:
        agent = subprocess.Popen([python, "-m", "agent"], env=env, cwd=REPO, stderr=log_file)
        wait_for_lock(spool, agent.pid)
        time.sleep(2.3)  # a few 1-s windows cut and sent (or spooled), one open at the signal
        stopped_at = time.time()
        agent.send_signal(signum)
        assert agent.wait(30) == 0
    log = (tmp_path / "agent.log").read_text()
    batched = int(re.search(r"agent stopped; (\d+) sample\(s\) batched", log).group(1))
    bodies = {r["raw"] for r in fake_api.delivered()} | set(spooled_bodies(spool))
    points = [
        p[0]
        for raw in bodies
        for s in json.loads(gzip.decompress(raw))["series"]
        for p in s["points"]
    ]
    assert batched > 20
    assert len(points) == batched  # every sample taken is in exactly one sent or spooled batch
    assert max(points) >= stopped_at - 0.5  # including the window open at the signal
    if api_up:
        assert fake_api.delivered()
    else:
        assert spooled_bodies(spool)
    assert os.path.exists(spool / "agent.lock")
