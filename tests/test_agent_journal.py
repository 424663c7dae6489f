"""The per-round journal: a killed agent's open window comes back, once, with its carry; a
full disk, a damaged spool file or a damaged journal row never stop the sampling."""

from __future__ import annotations

import errno
import itertools
import logging
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from agent.batcher import Batcher, decode
from agent.runner import Runner
from agent.samples import Sample
from agent.spool import Spool
from tests.conftest import small_tmpfs

T0 = 1_800_000_000.0  # a window edge for windows of 5 and 30 s


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Tick:
    """One sample per round; its value is the round's number, so each is recognisable."""

    name = "tick"
    enabled = True
    metrics = ()

    def __init__(self, pad: int = 0) -> None:
        self.n = 0
        self.pad = pad  # more series, with long tags: rounds that need new pages

    def collect(self, now: float | None = None) -> list[Sample]:
        self.n += 1
        out = [Sample("test.tick", {}, "count", now, float(self.n))]
        for i in range(self.pad):
            out.append(Sample("test.pad", {"i": f"{i:03d}" + "p" * 120}, "count", now, 1.0))
        return out

    def close(self) -> None:
        pass


def start(spool_dir: Path, clock: Clock, tick: Tick, window: float = 5.0) -> Runner:
    """What Pipeline does at start: the spool, the batcher with its carries, the journal back."""
    spool = Spool(spool_dir)
    runner = Runner([tick], Batcher("h", window, spool.carry()), spool, None, 1.0, clock=clock)
    runner.journal.restore(runner.batcher)
    return runner


def rounds(runner: Runner, clock: Clock, n: int) -> None:
    for _ in range(n):
        runner.take_round()
        clock.t += 1.0
        runner.cut(clock.t - 0.2)


def ticks(spool: Spool) -> list[tuple[list, list | None]]:
    """(points, carry) of the tick series in every spooled batch, oldest first."""
    out = []
    for (body,) in spool._db.execute("SELECT body FROM batches ORDER BY window, id"):
        if body.startswith(b"x"):  # a filler of fill()
            continue
        for s in decode(body)["series"]:
            if s["metric"] == "test.tick":
                out.append((s["points"], s.get("carry")))
    return out


@pytest.mark.parametrize("kill_after", range(0, 13))
def test_a_kill_after_any_round_loses_nothing_and_doubles_nothing(tmp_path, kill_after):
    clock, tick = Clock(T0 + 0.5), Tick()
    first = start(tmp_path, clock, tick)
    rounds(first, clock, kill_after)  # then SIGKILL: nothing is flushed, nothing closed
    clock.t += 2.0  # the restart takes a while
    second = start(tmp_path, clock, tick)
    rounds(second, clock, 13 - kill_after)
    second.cut(clock.t, everything=True)  # SIGTERM at the end
    chunks = ticks(second.spool)
    values = [p[1] for pts, _ in chunks for p in pts]
    assert values == [float(i) for i in range(1, 14)]  # each sample once, in order
    for (prev, _), (_cur, carry) in itertools.pairwise(chunks):
        assert carry == prev[-1]  # carry = the last sample before the batch (contract 3)
    stamps = [p[0] for pts, _ in chunks for p in pts]
    assert len({int((t - T0) // 5) for t in stamps}) == len(chunks)  # one batch per window


def test_a_restart_with_another_window_length_sends_each_point_once(tmp_path):
    clock, tick = Clock(T0 + 0.5), Tick()
    rounds(start(tmp_path, clock, tick, window=30.0), clock, 7)
    second = start(tmp_path, clock, tick, window=5.0)  # the journal is re-filed under 5-s windows
    rounds(second, clock, 3)
    second.cut(clock.t, everything=True)
    values = [p[1] for pts, _ in ticks(second.spool) for p in pts]
    assert values == [float(i) for i in range(1, 11)]
    assert second.spool.journal_rows() == []


def fill(spool: Spool, n: int) -> None:
    body = b"x" * 3000
    for i in range(n):
        spool.put(T0 - 1000 + i, body, {})


def test_a_full_disk_drops_the_oldest_batches_to_keep_the_journal(tmp_path, caplog):
    clock, tick = Clock(T0 + 0.5), Tick(pad=50)
    runner = start(tmp_path, clock, tick, window=30.0)
    fill(runner.spool, 20)
    runner.spool._db.execute("VACUUM")
    (pages,) = runner.spool._db.execute("PRAGMA page_count").fetchone()
    runner.spool._db.execute(f"PRAGMA max_page_count = {pages}")  # SQLITE_FULL from here on
    with caplog.at_level(logging.WARNING):
        rounds(runner, clock, 40)
    assert runner.spool.dropped() > 0
    assert "disk full: dropped the oldest spooled batch" in caplog.text
    assert runner.journal.held == {} and not runner._held
    runner.cut(clock.t, everything=True)
    values = [p[1] for pts, _ in ticks(runner.spool) for p in pts]
    assert values == [float(i) for i in range(1, 41)]


def test_a_disk_with_no_room_at_all_keeps_sampling_and_says_so_once(tmp_path, caplog):
    clock, tick = Clock(T0 + 0.5), Tick(pad=200)
    runner = start(tmp_path, clock, tick, window=30.0)  # no window closes: nothing to drop
    rounds(runner, clock, 1)
    db = runner.spool._db
    db.execute("VACUUM")
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    db.execute(f"PRAGMA max_page_count = {pages}")
    with caplog.at_level(logging.WARNING):
        rounds(runner, clock, 12)
        assert runner.journal.failing and runner.journal.held
        db.execute("PRAGMA max_page_count = 1000000")  # room again
        rounds(runner, clock, 1)
    assert caplog.text.count("journal not written") == 1
    assert "journal written again" in caplog.text and not runner.journal.held
    restarted = start(tmp_path, clock, Tick())  # a kill now: everything is on disk
    restarted.cut(clock.t, everything=True)
    values = [p[1] for pts, _ in ticks(restarted.spool) for p in pts]
    assert values == [float(i) for i in range(1, 15)]


def test_batches_the_disk_refuses_wait_in_memory_in_order(tmp_path, caplog, monkeypatch):
    clock, tick = Clock(T0 + 0.5), Tick()
    runner = start(tmp_path, clock, tick)
    real_put = runner.spool.put

    def refuse(*args, **kw):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(runner.spool, "put", refuse)
    with caplog.at_level(logging.ERROR):
        rounds(runner, clock, 17)  # three 5-s windows close meanwhile
    assert len(runner._held) == 3 and "not spooled" in caplog.text
    monkeypatch.setattr(runner.spool, "put", real_put)
    rounds(runner, clock, 1)
    runner.cut(clock.t, everything=True)
    chunks = ticks(runner.spool)
    assert [p[1] for pts, _ in chunks for p in pts] == [float(i) for i in range(1, 19)]
    for (prev, _), (_cur, carry) in itertools.pairwise(chunks):
        assert carry == prev[-1]
    assert runner.spool.journal_rows() == []


@pytest.mark.parametrize("damage", ["garbage", "torn"])
def test_a_corrupt_spool_file_is_moved_aside_and_the_agent_carries_on(tmp_path, caplog, damage):
    spool = Spool(tmp_path)
    fill(spool, 50)
    spool.close()
    path = tmp_path / "spool.db"
    if damage == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    else:  # a valid header, damaged pages in the middle
        data = bytearray(path.read_bytes())
        data[8192:16384] = b"\xff" * 8192
        path.write_bytes(bytes(data))
    with caplog.at_level(logging.ERROR):
        again = Spool(tmp_path)
    assert "is corrupt" in caplog.text and "moved aside" in caplog.text
    assert again.pending() == 0
    again.put(T0, b"body", {})
    assert again.pending() == 1
    (moved,) = (tmp_path / "corrupt").iterdir()
    assert (moved / "spool.db").exists()


def test_a_damaged_journal_row_is_skipped_with_a_log_line(tmp_path, caplog):
    clock, tick = Clock(T0 + 0.5), Tick()
    rounds(start(tmp_path, clock, tick), clock, 3)
    db = sqlite3.connect(tmp_path / "spool.db")
    db.execute("INSERT INTO journal (window, rows) VALUES (?, ?)", (T0, "[[1, 2"))
    db.commit()
    db.close()
    with caplog.at_level(logging.ERROR):
        again = start(tmp_path, clock, tick)
    assert "damaged row" in caplog.text
    again.cut(clock.t, everything=True)
    values = [p[1] for pts, _ in ticks(again.spool) for p in pts]
    assert values == [1.0, 2.0, 3.0]


@pytest.fixture
def small_disk(tmp_path: Path):
    """An 8 MB tmpfs: a real file system that fills up (needs mount rights, else skipped)."""
    with small_tmpfs(tmp_path / "small", "8m") as mnt:
        yield mnt


def fill_up(path: Path) -> None:
    """Write until the file system says ENOSPC."""
    try:
        with open(path, "wb") as fh:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
    except OSError as exc:
        assert exc.errno == errno.ENOSPC


def wait_for_line(path: Path, text: str, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.e2e
def test_an_agent_on_a_disk_that_fills_up_keeps_sampling_and_says_so(
    small_disk, agent_env, python, closed_port_url, tmp_path
):
    env = {**agent_env, "FLEETPULSE_URL": closed_port_url, "FLEETPULSE_INTERVAL": "0.05",
           "FLEETPULSE_SPOOL_DIR": str(small_disk / "spool")}  # fmt: skip
    log_path = tmp_path / "agent.log"
    repo = Path(__file__).resolve().parent.parent
    with open(log_path, "wb") as log_file:
        agent = subprocess.Popen([python, "-m", "agent"], env=env, cwd=repo, stderr=log_file)
        try:
            time.sleep(3.0)  # a few 1-s batches spooled (the API is down)
            fill_up(small_disk / "filler")
            assert wait_for_line(log_path, "released the spool's"), log_path.read_text()
            fill_up(small_disk / "filler2")  # and full again: drop batches, or hold in memory
            assert wait_for_line(log_path, "disk is full"), log_path.read_text()
            time.sleep(1.0)
            assert agent.poll() is None, log_path.read_text()  # still sampling
            for name in ("filler", "filler2"):
                (small_disk / name).unlink()  # room again
            if "journal not written" in log_path.read_text():
                assert wait_for_line(log_path, "journal written again"), log_path.read_text()
        finally:
            agent.send_signal(signal.SIGTERM)
            assert agent.wait(30) == 0
    text = log_path.read_text()
    assert "Traceback" not in text, text[-3000:]
    spool = Spool(small_disk / "spool")  # intact, and holding what it kept
    try:
        assert spool.pending() > 0 and spool.journal_rows() == []
    finally:
        spool.close()
