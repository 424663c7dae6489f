"""SIGKILL the agent at random moments, restart it each time, and count every sample.

Through a real gunicorn (`live_api`): the agent with a test collector (`tests/agent_tick.py`)
that logs each sample it hands over. After each kill, every logged sample but the round in
flight must be on disk (journal or spooled/sent batch); the round in flight may or may not
be. At the end the API's 30-second windows must hold exactly the samples on disk: none lost,
none counted twice, per window.
"""

from __future__ import annotations

import math
import os
import random
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from agent.batcher import series_key
from agent.journal import decode_rows
from agent.spool import Spool
from tests.agent_fixtures import agent_process_env
from tests.agent_fixtures import api_call as call

REPO = Path(__file__).resolve().parent.parent
KILLS = 9
TICK = series_key("test.tick", {})


def on_disk(spool_dir: Path) -> tuple[float, set[float]]:
    """What a dead agent left: the tick's last spooled timestamp and its journaled ones."""
    spool = Spool(spool_dir)
    try:
        carry = spool.carry().get(TICK, (-math.inf, 0.0))[0]
        keys = spool.journal_keys()
        journaled = {
            ts for _, text in spool.journal_rows() for key, _, ts, _ in decode_rows(text, keys)
            if key == TICK
        }  # fmt: skip
    finally:
        spool.close()
    return carry, journaled


def logged(path: Path) -> list[float]:
    return [float(line) for line in path.read_text().split()] if path.exists() else []


@pytest.mark.e2e
def test_random_sigkills_lose_no_sample_and_count_none_twice(live_api, tmp_path):
    host = "kill-" + uuid.uuid4().hex[:8]
    _, tok = call("POST", live_api.url + "/api/v1/tokens", live_api.admin_token,
                  {"role": "agent", "host": host})  # fmt: skip
    spool_dir, tick_log = tmp_path / "spool", tmp_path / "ticks"
    env = agent_process_env(
        live_api.url, tok["token"], host, spool_dir,
        FLEETPULSE_INTERVAL="0.25",
        FLEETPULSE_WINDOW="3",  # batches cut (and sent) often: kills land around them too
        FLEETPULSE_COLLECTORS="cpu,memory", TICK_LOG=str(tick_log),
    )  # fmt: skip
    rng = random.Random(os.environ.get("KILL_SEED", "12"))
    agent_log = (tmp_path / "agent.log").open("ab")
    taken: list[float] = []  # every sample the agent kept (on disk when it died)
    in_flight_lost = 0
    started = time.time()

    def start() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.agent_tick"], cwd=REPO, env=env, stderr=agent_log
        )

    for _ in range(KILLS):
        agent = start()
        time.sleep(rng.uniform(0.6, 4.5))
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        new = logged(tick_log)[len(taken) + in_flight_lost :]
        carry, journaled = on_disk(spool_dir)
        kept = [ts for ts in new if ts <= carry or ts in journaled]
        # every round but the one in flight at the kill is on disk
        assert kept == new or kept == new[:-1], (new[-3:], carry, sorted(journaled)[-3:])
        in_flight_lost += len(new) - len(kept)
        taken.extend(kept)
    agent = start()
    time.sleep(2.0)
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(30) == 0
    taken.extend(logged(tick_log)[len(taken) + in_flight_lost :])
    check_left = Spool(spool_dir)
    try:
        assert check_left.pending() == 0 and check_left.journal_rows() == []
    finally:
        check_left.close()

    window = {"start": int(started) - 60, "end": int(time.time()) + 60}
    q = urllib.parse.urlencode({"host": host, "metric": "test.tick", "resolution": "30s", **window})
    _, got = call("GET", f"{live_api.url}/api/v1/series?{q}", live_api.admin_token)
    (series,) = got["series"]
    stored = {datetime.fromisoformat(p["time"]).timestamp(): p["count"] for p in series["points"]}
    expected = Counter(math.floor(ts / 30) * 30 + 30 for ts in taken)
    assert len(taken) == len(set(taken)) and len(taken) > 40
    assert in_flight_lost <= KILLS
    assert sum(stored.values()) == len(taken)
    assert stored == dict(expected)
    text = (tmp_path / "agent.log").read_text()
    assert "ERROR" not in text, text[-3000:]
    restored = [int(n) for n in re.findall(r"(\d+) journaled point\(s\) restored", text)]
    assert any(restored), "no kill left a window in the journal: the restore was never tried"
    print(f"{len(taken)} samples, {in_flight_lost} in flight at a kill, restored {restored}")
