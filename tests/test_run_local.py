"""`make run` (scripts/run-local.sh) end to end: a real gunicorn and a real agent.

Each test runs the script from a temporary copy of the repository's layout (the script copied,
`app`, `agent` and `gunicorn.conf.py` linked), so its `var/` (tokens, SQLite file, spool) is
fresh, and on a free port. Ctrl-C is sent as a terminal sends it: SIGINT to the script's whole
process group.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from harness.net import free_port

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "run-local.sh"
VENV_BIN = Path(sys.executable).parent
RUNNING = "fleetpulse is running"

pytestmark = pytest.mark.e2e


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    work = tmp_path / "repo"
    (work / "scripts").mkdir(parents=True)
    shutil.copy2(SCRIPT, work / "scripts" / "run-local.sh")
    for name in ("app", "agent", "gunicorn.conf.py"):
        (work / name).symlink_to(ROOT / name)
    return work


class LocalRun:
    """One `bash scripts/run-local.sh` in its own session, its output in a log file."""

    def __init__(self, checkout: Path, port: int, name: str, **env: str) -> None:
        self.checkout = checkout
        self.log = checkout / f"{name}.log"
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("FLEETPULSE_") and k != "GUNICORN_CMD_ARGS"
        }
        self.env = {
            **base,
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PORT": str(port),
            "FLEETPULSE_WORKERS": "2",
            **env,
        }
        self.proc: subprocess.Popen | None = None
        self.seen: dict[int, psutil.Process] = {}

    def start(self) -> LocalRun:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                ["bash", str(self.checkout / "scripts" / "run-local.sh")],
                cwd=self.checkout,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # As a terminal starts it: a runner that ignores SIGINT (a CI job started in the
                # background by a non-interactive shell) would pass that on, and bash cannot
                # trap a signal ignored when it starts, so Ctrl-C would do nothing.
                preexec_fn=_default_sigint,
            )
        return self

    def exit_code(self, timeout: float, still_running: str) -> int:
        """The run's exit status within ``timeout``; fail with its output if it runs on."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{still_running}:\n{self.text()[-4000:]}")

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def note_children(self) -> list[psutil.Process]:
        """Remember every process the script started (to check they end, and to clean up)."""
        try:
            kids = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            kids = []
        for k in kids:
            self.seen.setdefault(k.pid, k)
        return kids

    def wait_for(self, text: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.note_children()
            if text in self.text():
                return
            if self.proc.poll() is not None:
                pytest.fail(f"run-local.sh exited {self.proc.returncode}:\n{self.text()[-4000:]}")
            time.sleep(0.2)
        pytest.fail(f"no {text!r} within {timeout} s:\n{self.text()[-4000:]}")

    def ctrl_c(self, timeout: float = 60.0, times: int = 1) -> int:
        self.note_children()
        for k in range(times):  # an impatient user presses it again while it stops
            if k:
                time.sleep(0.05)
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {timeout} s after Ctrl-C:\n{self.text()[-4000:]}")

    def survivors(self, timeout: float = 10.0) -> list[psutil.Process]:
        _gone, alive = psutil.wait_procs(list(self.seen.values()), timeout=timeout)
        return alive

    def kill(self) -> None:
        """Teardown: whatever is left of this run."""
        if self.proc is None:
            return
        self.note_children()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for p in self.seen.values():
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def runs():
    started: list[LocalRun] = []
    yield started
    for r in started:
        r.kill()


def agents_in(checkout: Path) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline", "cwd"]):
        cmd = p.info["cmdline"] or []
        if p.info["cwd"] == str(checkout) and "-m" in cmd and "agent" in cmd:
            out.append(p)
    return out


def pending_batches(spool_dir: Path) -> int:
    db = spool_dir / "spool.db"
    if not db.exists():
        return 0
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT COUNT(*) FROM batches").fetchone()[0]
    finally:
        con.close()


def test_ctrl_c_stops_the_agent_first_so_it_flushes_to_a_live_server(checkout, runs):
    run = LocalRun(checkout, free_port(), "run")
    runs.append(run.start())
    run.wait_for(RUNNING)
    # the agent samples a few rounds: a window is open in its memory when Ctrl-C comes
    time.sleep(3)
    children = run.note_children()
    assert any("agent" in " ".join(c.cmdline()) for c in children), "no agent started"
    rc = run.ctrl_c()
    out = run.text()
    assert rc in (0, 130), out[-4000:]
    assert "unreachable" not in out, f"the server stopped before the agent:\n{out[-4000:]}"
    spool = checkout / "var" / "spool"
    assert (spool / "spool.db").exists(), "the agent never opened its spool"
    assert pending_batches(spool) == 0, f"a batch was left in the spool:\n{out[-4000:]}"
    assert not run.survivors(), f"processes left running after Ctrl-C:\n{out[-4000:]}"


def test_a_second_ctrl_c_while_stopping_still_stops_everything(checkout, runs):
    run = LocalRun(checkout, free_port(), "twice")
    runs.append(run.start())
    run.wait_for(RUNNING)
    rc = run.ctrl_c(times=2)
    out = run.text()
    assert rc in (0, 130), out[-4000:]
    assert not run.survivors(), f"processes left running after two Ctrl-Cs:\n{out[-4000:]}"


def page_link(out: str) -> str:
    """The web page's sign-in link that `make run` prints."""
    found = re.search(r"the web page:\s+(\S+)", out)
    assert found, out[-4000:]
    return found.group(1)


def check_page_link(link: str) -> str:
    """The link's page loads without a token and its reader token reads; the token."""
    base, token = link.split("/#token=")
    page = requests.get(base + "/", timeout=10)
    assert page.status_code == 200 and "Content-Security-Policy" in page.headers
    hosts = requests.get(base + "/api/v1/hosts", headers={"Authorization": f"Bearer {token}"})
    assert hosts.status_code == 200, hosts.text
    return token


def test_a_second_run_on_a_taken_port_stops_before_starting_anything(checkout, runs):
    port = free_port()
    first = LocalRun(checkout, port, "first")
    runs.append(first.start())
    first.wait_for(RUNNING)
    assert len(agents_in(checkout)) == 1
    reader = check_page_link(page_link(first.text()))

    second = LocalRun(checkout, port, "second")
    runs.append(second.start())
    rc = second.exit_code(20, "a second run on a taken port is still running")
    out = second.text()
    assert rc != 0, out
    assert RUNNING not in out, out
    assert f"port {port}" in out and "PORT=" in out and "make run" in out, out
    for gunicorn_bind_error in ("Connection in use", "Address already in use"):
        assert gunicorn_bind_error not in out, "gunicorn was started: check the port first"
    assert len(agents_in(checkout)) == 1, "a second agent was started on the same spool"
    assert not second.survivors(timeout=1)

    # the first one is untouched; once it is stopped, the port is free for a new run
    assert first.proc.poll() is None
    assert first.ctrl_c() in (0, 130)
    assert not first.survivors()
    third = LocalRun(checkout, port, "third")
    runs.append(third.start())
    third.wait_for(RUNNING)
    assert len(agents_in(checkout)) == 1
    assert third.ctrl_c() in (0, 130)
    assert not third.survivors()
    assert "unreachable" not in third.text()
    assert page_link(third.text()).endswith(f"/#token={reader}"), "the kept reader token is reused"


def test_gunicorn_dying_at_start_stops_the_script_with_its_error(checkout, runs):
    port = free_port()
    run = LocalRun(checkout, port, "bad", FLEETPULSE_STORAGE_URL="bogus://nowhere")
    runs.append(run.start())
    t0 = time.monotonic()
    rc = run.exit_code(30, "still running 30 s after gunicorn died")
    out = run.text()
    assert rc != 0, out
    assert time.monotonic() - t0 < 15, f"gunicorn's death noticed late:\n{out[-4000:]}"
    assert RUNNING not in out, out
    assert "Worker failed to boot" in out, "gunicorn's own error is shown"
    assert "gunicorn exited" in out, out
    assert not agents_in(checkout)
