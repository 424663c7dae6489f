"""The embedded store on real SQLite files: WAL, concurrent writers, indexes, retention."""

from __future__ import annotations

import itertools
import multiprocessing as mp
import sqlite3
import time

import numpy as np
import pytest

from app.core.records import Query
from app.storage.sqlite import SqliteStore
from app.web.settings import Settings
from tests.conftest import one_series_batch as batch

RET = {"raw": 0.0, "30s": 7 * 86400.0, "30m": 400 * 86400.0}


def rows(path: str) -> list[tuple]:
    with sqlite3.connect(path) as con:
        return con.execute(
            "SELECT t, mean, min, max, last, count, covered FROM w30 ORDER BY series_id, t"
        ).fetchall()


def _writer(path: str, parts: list, host: str) -> None:
    store = SqliteStore(path, 90.0, RET)
    for ts, vals, carry in parts:
        store.write(batch(host, ts, vals, carry))


def test_wal_and_range_index(tmp_path):
    path = str(tmp_path / "s.db")
    store = SqliteStore(path, 90.0, RET)
    assert store.db.conn().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    plan = (
        store.db.conn()
        .execute("EXPLAIN QUERY PLAN SELECT * FROM w30 WHERE series_id=1 AND t>0 AND t<=100")
        .fetchall()
    )
    assert "SEARCH" in plan[0][3] and "PRIMARY KEY" in plan[0][3]


def test_concurrent_processes_split_batches_equal_one_batch(tmp_path):
    """4 processes write interleaved pieces of the same windows at once."""
    t0 = (int(time.time()) // 30 - 40) * 30
    ts = [t0 + 1.5 * k for k in range(400)]
    vals = [float((k * 7) % 23) for k in range(400)]
    one = str(tmp_path / "one.db")
    SqliteStore(one, 90.0, RET).write(batch("h", ts, vals))
    cuts = [*list(range(0, 400, 25)), 400]
    parts = [
        (ts[a:b], vals[a:b], (ts[a - 1], vals[a - 1]) if a else None)
        for a, b in itertools.pairwise(cuts)
    ]
    many = str(tmp_path / "many.db")
    SqliteStore(many, 90.0, RET)
    ctx = mp.get_context("spawn")  # no SQLite state inherited across fork
    procs = [ctx.Process(target=_writer, args=(many, parts[i::4], "h")) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    a, b = rows(one), rows(many)
    assert len(a) == len(b) == 20
    for x, y in zip(a, b, strict=True):
        assert x[0] == y[0] and x[5] == y[5]
        assert np.allclose(x[1:], y[1:], rtol=1e-9, atol=1e-9)


def test_retention_per_series_kind(tmp_path):
    now = time.time()
    path = str(tmp_path / "r.db")
    store = SqliteStore(path, 90.0, {"raw": 3600.0, "30s": 2 * 86400.0, "30m": 10 * 86400.0})
    old = (int(now) // 1800 - 24 * 4) * 1800  # 4 days ago
    store.write(batch("h", [old + 10 * k for k in range(200)], [1.0] * 200))
    recent = (int(now) // 30 - 10) * 30
    store.write(batch("h", [recent + k for k in range(30)], [2.0] * 30))
    con = store.db.conn()
    con.execute(
        "INSERT INTO w30m SELECT series_id, t, mean, min, max, last, count, covered, integral "
        "FROM w30 WHERE t < ?",
        (old + 600,),
    )
    counts = store.run_jobs(now)
    assert counts["expired"] > 0
    q = Query("h", 0, now + 60, "30s", metric="m.x")
    (sp,) = store.query(q)
    assert sp.windows.time.min() > now - 2 * 86400  # 30-s windows older than 2 days are gone
    (sp30m,) = store.query(Query("h", 0, now + 1800, "30m", metric="m.x"))
    assert sp30m.windows.time.min() <= old + 600  # the 30-minute series keeps 10 days
    raw = con.execute("SELECT MIN(ts), COUNT(*) FROM raw").fetchone()
    assert raw[0] >= now - 3600 and raw[1] == 30  # raw kept 1 h


def test_raw_not_kept_by_default(tmp_path):
    store = SqliteStore(str(tmp_path / "n.db"), 90.0, RET)
    t0 = (int(time.time()) // 30 - 5) * 30
    store.write(batch("h", [t0, t0 + 1], [1.0, 2.0]))
    assert store.db.conn().execute("SELECT COUNT(*) FROM raw").fetchone()[0] == 0


def test_settings_choose_the_store(tmp_path):
    from app.storage import open_store

    s = Settings.from_env({}, storage_url=f"sqlite:///{tmp_path}/x.db")
    assert isinstance(open_store(s.storage_url, s.store_options()), SqliteStore)
    with pytest.raises(ValueError, match="absolute"):
        open_store("sqlite://relative.db", s.store_options())
    with pytest.raises(ValueError, match="scheme"):
        open_store("postgres://x/y", s.store_options())


def _open_at_once(path: str, meta: str, barrier, errors) -> None:
    """One gunicorn worker's boot: the store and the metadata file, opened at the same moment."""
    from app.storage.meta import MetaStore

    barrier.wait()
    try:
        SqliteStore(path, 15.0, {"raw": 0, "30s": 86400, "30m": 86400})
        MetaStore(f"sqlite://{meta}")
    except Exception as e:  # reported to the parent
        errors.put(repr(e))


def test_workers_booting_at_once_on_a_fresh_file_all_open_it(tmp_path):
    """Switching a fresh file to WAL answers "database is locked" at once (no busy wait) when
    another connection opens it: a worker failing at boot makes gunicorn stop every worker."""
    ctx = mp.get_context("spawn")
    errors = ctx.Queue()
    for round_ in range(6):
        barrier = ctx.Barrier(6)
        procs = [
            ctx.Process(
                target=_open_at_once,
                args=(
                    str(tmp_path / f"s{round_}.db"),
                    str(tmp_path / f"m{round_}.db"),
                    barrier,
                    errors,
                ),
            )
            for _ in range(6)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0] * 6
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == []
