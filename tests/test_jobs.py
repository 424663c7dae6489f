"""The in-server downsampling job: a lease makes each slot run once across workers."""

from __future__ import annotations

import multiprocessing as mp

from app.storage.meta import MetaStore
from app.storage.sqlite import SqliteStore
from app.web.jobs import JobRunner

RET = {"raw": 0.0, "30s": 7 * 86400.0, "30m": 400 * 86400.0}


def _try(path: str, meta_path: str, now: float, q) -> None:
    runner = JobRunner(SqliteStore(path, 90.0, RET), MetaStore(f"sqlite://{meta_path}"), 900.0)
    q.put(runner.run_slot(now) is not None)


def test_each_slot_runs_once_across_processes(tmp_path):
    path, meta = str(tmp_path / "d.db"), str(tmp_path / "m.db")
    SqliteStore(path, 90.0, RET)
    MetaStore(f"sqlite://{meta}")
    ctx = mp.get_context("spawn")  # no SQLite state inherited across fork
    q = ctx.Queue()
    now = 1_763_892_000.0
    procs = [ctx.Process(target=_try, args=(path, meta, now + i, q)) for i in range(6)]
    for p in procs:
        p.start()
    ran = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert sum(ran) == 1
    runner = JobRunner(SqliteStore(path, 90.0, RET), MetaStore(f"sqlite://{meta}"), 900.0)
    assert runner.run_slot(now + 100) is None  # same slot
    assert runner.run_slot(now + 900) is not None  # next slot
    assert runner.run_slot(now) is None  # an older slot never runs again


def test_thread_starts_and_runs_at_once(tmp_path):
    runner = JobRunner(
        SqliteStore(str(tmp_path / "d.db"), 90.0, RET),
        MetaStore(f"sqlite://{tmp_path}/m.db"),
        900.0,
    )
    runner.start()
    try:
        import time

        deadline = time.time() + 10
        while time.time() < deadline:
            row = runner.meta.db.read("SELECT slot FROM jobs WHERE name='downsample'")
            if row and row[0][0] >= 0:
                break
            time.sleep(0.05)
        assert row and row[0][0] == int(time.time() // 900)
    finally:
        runner.stop()
