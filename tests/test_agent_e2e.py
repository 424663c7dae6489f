"""The agent against a real gunicorn of the API (the `live_api` fixture in conftest.py)."""

import math
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.agent_fixtures import agent_process_env
from tests.agent_fixtures import api_call as call

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.e2e
def test_agent_windows_are_stored_by_the_api(live_api, tmp_path):
    host = "e2e-" + uuid.uuid4().hex[:8]
    status, tok = call("POST", live_api.url + "/api/v1/tokens", live_api.admin_token,
                       {"role": "agent", "host": host})  # fmt: skip
    assert status == 201
    env = agent_process_env(
        live_api.url, tok["token"], host, tmp_path / "spool",
        FLEETPULSE_INTERVAL="0.5", FLEETPULSE_COLLECTORS="cpu,memory,disk,network",
    )  # fmt: skip
    started = time.time()
    boundary = math.ceil((started + 2) / 30) * 30  # the first window ending >= 2 s from now
    with open(tmp_path / "agent.log", "wb") as log_file:
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent"], cwd=REPO, env=env, stderr=log_file
        )
        try:
            time.sleep(max(0.0, boundary - time.time()) + 3.0)  # that window closes, is sent
        finally:
            agent.send_signal(signal.SIGTERM)
            assert agent.wait(30) == 0
    log = (tmp_path / "agent.log").read_text()
    assert "ERROR" not in log, log
    q = urllib.parse.urlencode(
        {
            "host": host,
            "metric": "cpu.percent",
            "start": int(started) - 60,
            "end": int(time.time()) + 60,
            "tag.cpu": "total",
        }
    )
    status, got = call("GET", f"{live_api.url}/api/v1/series?{q}", live_api.admin_token)
    assert status == 200
    (series,) = got["series"]
    assert series["tags"] == {"cpu": "total"}
    points = series["points"]
    by_label = {p["time"]: p for p in points}
    label = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(boundary))
    after = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(boundary + 30))
    assert label in by_label, points  # cut and sent when its window closed
    assert after in by_label, points  # the open window, flushed at SIGTERM
    assert by_label[label]["count"] >= 2 and by_label[after]["count"] >= 4
    assert set(by_label) <= {
        label,
        after,
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(boundary - 30)),
    }
    assert all(0 <= p["min"] <= p["mean"] <= p["max"] <= 100 for p in points)
    assert all(0 < p["covered"] <= 30 for p in points)
