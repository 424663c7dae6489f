"""The embedded store: one SQLite file in WAL mode, several gunicorn workers writing at once."""

from __future__ import annotations

import contextlib
import logging
import math
import sqlite3
from collections.abc import Iterator

import numpy as np

from app.core import codec, engine
from app.core.records import Batch, Windows
from app.storage import rollup
from app.storage.base import Rows, Store, Stored, series_bounds, windows_from_rows
from app.storage.late import LATE_AFTER
from app.storage.registry import REGISTRY_SCHEMA, Found, Registry
from app.storage.sqldb import SqliteDB

log = logging.getLogger(__name__)

SCHEMA = (
    REGISTRY_SCHEMA
    + """
CREATE TABLE IF NOT EXISTS w30 (
    series_id INTEGER NOT NULL,
    t INTEGER NOT NULL,
    mean REAL, min REAL, max REAL, last REAL, count INTEGER, covered REAL, integral REAL,
    prev_ts REAL, prev_val REAL, segs BLOB,
    PRIMARY KEY (series_id, t)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS w30m (
    series_id INTEGER NOT NULL,
    t INTEGER NOT NULL,
    mean REAL, min REAL, max REAL, last REAL, count INTEGER, covered REAL, integral REAL,
    PRIMARY KEY (series_id, t)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS raw (
    series_id INTEGER NOT NULL,
    ts REAL NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (series_id, ts)
) WITHOUT ROWID;
"""
)

POINT_COLS = "t, mean, min, max, last, count, covered, integral"
CHUNK = 500
EXPIRY = (("w30", "t", "30s"), ("w30m", "t", "30m"), ("raw", "ts", "raw"))  # table, time, kind


class SqliteStore(Store):
    """Windows, their mergeable state, the 30-minute series and optional raw samples."""

    def __init__(
        self, path: str, hold: float, retention: dict[str, float], late_after: float = LATE_AFTER
    ) -> None:
        self.db = SqliteDB(path, SCHEMA)
        self.registry = Registry(self.db)
        self.hold = hold
        self.late_after = late_after
        self.retention = retention  # keys: raw, 30s, 30m (seconds; raw 0 = not kept)
        self.keep_raw = retention.get("raw", 0) > 0

    @contextlib.contextmanager
    def write_section(self, host: str) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: concurrent workers never interleave a read-merge-write."""
        with self.db.tx() as con:
            yield con

    @contextlib.contextmanager
    def registry_tx(self, tx: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        yield tx  # the registry lives in the same file: the write's own transaction

    def read_states(
        self, tx: sqlite3.Connection, batch: Batch, ids: list[int], s: engine.Summaries
    ) -> Stored:
        bounds = series_bounds(s, len(batch.keys))
        stored: Stored = {}
        for k, sid in enumerate(ids):
            a, b = bounds[k], bounds[k + 1]
            if a == b:
                continue
            rows = tx.execute(
                "SELECT t, prev_ts, prev_val, segs FROM w30 "
                "WHERE series_id=? AND t BETWEEN ? AND ?",
                (sid, int(s.label[a]), int(s.label[b - 1])),
            ).fetchall()
            for t, pts, pv, blob in rows:
                stored[(k, t)] = codec.unpack_state(pts, pv, blob)
        return stored

    def write_windows(
        self, tx: sqlite3.Connection, batch: Batch, ids: list[int], rows: Rows
    ) -> None:
        w, st = rows.windows, rows.states
        sids = np.asarray(ids, dtype=np.int64)[rows.merged.sid]
        tx.executemany(
            "INSERT OR REPLACE INTO w30 VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    int(sids[i]),
                    int(w.time[i]),
                    float(w.mean[i]),
                    float(w.min[i]),
                    float(w.max[i]),
                    float(w.last[i]),
                    int(w.count[i]),
                    float(w.covered[i]),
                    float(w.integral[i]),
                    None if math.isnan(st.prev_ts[i]) else st.prev_ts[i],
                    None if math.isnan(st.prev_val[i]) else st.prev_val[i],
                    st.segs[i],
                )
                for i in rows.keep.tolist()
            ],
        )

    def write_raw(self, tx: sqlite3.Connection, batch: Batch, ids: list[int]) -> None:
        tx.executemany(
            "INSERT OR IGNORE INTO raw VALUES (?,?,?)",
            zip(
                np.asarray(ids, dtype=np.int64)[batch.sid].tolist(),
                batch.ts.tolist(),
                batch.val.tolist(),
                strict=True,
            ),
        )

    def read_series(
        self, host: str, found: list[Found], start: float, end: float, res: str
    ) -> list[Windows]:
        table = "w30" if res == "30s" else "w30m"
        sql = f"SELECT {POINT_COLS} FROM {table} WHERE series_id=? AND t>? AND t<=? ORDER BY t"
        return [windows_from_rows(self.db.read(sql, (sid, start, end))) for sid, *_ in found]

    def ping(self) -> None:
        self.db.read("SELECT 1")

    def rollup(self, after: int, upto: int, host: str | None) -> int:
        ids = self.registry.all_ids() if host is None else self.registry.ids_of(host)
        written = 0
        for c in range(0, len(ids), CHUNK):
            out = self._rollup(ids[c : c + CHUNK], after, upto)
            with self.db.tx() as con:
                con.executemany("INSERT OR REPLACE INTO w30m VALUES (?,?,?,?,?,?,?,?,?)", out)
            written += len(out)
        return written

    def _rollup(self, sids: list[int], after: float, upto: float) -> list[tuple]:
        """w30m rows of the 30-second windows labelled in (after, upto], per series."""
        marks = ",".join("?" * len(sids))
        rows = self.db.read(
            f"SELECT series_id, {POINT_COLS} FROM w30 "
            f"WHERE series_id IN ({marks}) AND t>? AND t<=? ORDER BY series_id, t",
            (*sids, after, upto),
        )
        out: list[tuple] = []
        if not rows:
            return out
        sid = np.array([r[0] for r in rows])
        starts = np.flatnonzero(np.append(True, sid[1:] != sid[:-1]))
        for lo, hi in zip(starts, [*starts[1:], len(rows)], strict=True):
            w = rollup.downsample(windows_from_rows([r[1:] for r in rows[lo:hi]]))
            cols = [c.tolist() for c in w.__dict__.values()]
            out.extend((int(sid[lo]), *row) for row in zip(*cols, strict=True))
        return out

    def expire(self, now: float) -> int:
        ids = self.registry.all_ids()
        deleted = 0
        for c in range(0, len(ids), CHUNK):
            with self.db.tx() as con:
                for sid in ids[c : c + CHUNK]:
                    for table, col, key in EXPIRY:
                        keep = self.retention.get(key, 0)
                        cutoff = math.inf if table == "raw" and keep <= 0 else now - keep
                        deleted += con.execute(
                            f"DELETE FROM {table} WHERE series_id=? AND {col}<?", (sid, cutoff)
                        ).rowcount
        return deleted

    def close(self) -> None:
        self.db.close()
