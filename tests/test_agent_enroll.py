"""The agent enrolls itself (contract section 7), against a real gunicorn: one enrollment
token, the agent's own token kept in its spool directory (0600) and used across restarts, and
a refusal logged once and not hammered."""

from __future__ import annotations

import signal
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.agent_fixtures import api_call as call

REPO = Path(__file__).resolve().parent.parent


def start_agent(api, host: str, enroll: str, spool: Path, log: Path) -> subprocess.Popen:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
        "FLEETPULSE_URL": api.url,
        "FLEETPULSE_ENROLL_TOKEN": enroll,
        "FLEETPULSE_HOST": host,
        "FLEETPULSE_INTERVAL": "0.5",
        "FLEETPULSE_WINDOW": "2",
        "FLEETPULSE_COLLECTORS": "cpu,memory",
        "FLEETPULSE_SPOOL_DIR": str(spool),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "agent"], cwd=REPO, env=env, stderr=log.open("ab")
    )


def last_seen(api, host: str) -> str | None:
    _, hosts = call("GET", api.url + "/api/v1/hosts", api.admin_token)
    return next((h["last_seen"] for h in hosts if h["host"] == host), None)


def wait_for(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


def stop(agent: subprocess.Popen) -> None:
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(30) == 0


@pytest.mark.e2e
def test_an_agent_enrolls_once_and_keeps_its_token(live_api, tmp_path):
    host = "enr-" + uuid.uuid4().hex[:8]
    _, tok = call("POST", live_api.url + "/api/v1/tokens", live_api.admin_token,
                  {"role": "enroll", "uses": 1})  # fmt: skip
    spool, log = tmp_path / "spool", tmp_path / "agent.log"
    agent = start_agent(live_api, host, tok["token"], spool, log)
    try:
        assert wait_for(lambda: last_seen(live_api, host) is not None), log.read_text()
    finally:
        stop(agent)
    kept = spool / "agent-token"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    _, tokens = call("GET", live_api.url + "/api/v1/tokens", live_api.admin_token)
    (mine,) = [t for t in tokens if t["host"] == host]
    assert mine["role"] == "agent"
    # The enrollment token is used up (and revoked too): a restart uses the kept token.
    call("DELETE", f"{live_api.url}/api/v1/tokens/{tok['id']}", live_api.admin_token)
    before = last_seen(live_api, host)
    agent = start_agent(live_api, host, tok["token"], spool, log)
    try:
        assert wait_for(lambda: last_seen(live_api, host) != before), log.read_text()
    finally:
        stop(agent)
    text = log.read_text()
    assert text.count("enrolled as host") == 1 and "ERROR" not in text, text


@pytest.mark.e2e
def test_a_taken_host_is_logged_once_and_not_hammered(live_api, tmp_path):
    host = "taken-" + uuid.uuid4().hex[:8]
    call("POST", live_api.url + "/api/v1/tokens", live_api.admin_token,
         {"role": "agent", "host": host})  # fmt: skip
    _, tok = call("POST", live_api.url + "/api/v1/tokens", live_api.admin_token, {"role": "enroll"})
    log = tmp_path / "agent.log"
    agent = start_agent(live_api, host, tok["token"], tmp_path / "spool", log)
    try:
        assert wait_for(lambda: "enrollment refused (409)" in log.read_text(), 20), log.read_text()
        time.sleep(3)
        assert agent.poll() is None  # it keeps sampling into its spool and waits
    finally:
        stop(agent)
    assert log.read_text().count("enrollment refused (409)") == 1
    server = live_api.log_path.read_text()
    assert server.count("POST /api/v1/enroll 409") == 1, server[-2000:]
    assert not (tmp_path / "spool" / "agent-token").exists()


@pytest.mark.e2e
def test_an_enrollment_token_that_expired_while_the_agent_was_down(live_api, tmp_path):
    """Never enrolled before it went down: a 401, said once with what to do; no tight loop."""
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2))
    _, tok = call("POST", live_api.url + "/api/v1/tokens", live_api.admin_token,
                  {"role": "enroll", "expires": expires})  # fmt: skip
    time.sleep(3.5)  # the host was down while the token ran out
    host, log = "late-" + uuid.uuid4().hex[:8], tmp_path / "agent.log"
    agent = start_agent(live_api, host, tok["token"], tmp_path / "spool", log)
    try:
        assert wait_for(lambda: "enrollment refused (401)" in log.read_text(), 20), log.read_text()
        time.sleep(2)
        assert agent.poll() is None
    finally:
        stop(agent)
    text = log.read_text()
    assert text.count("enrollment refused (401)") == 1 and "fresh enrollment token" in text
    assert live_api.log_path.read_text().count("POST /api/v1/enroll 401") == 1
    assert not (tmp_path / "spool" / "agent-token").exists()
