"""The embedded store: one SQLite file in WAL mode, several gunicorn workers writing at once."""

from __future__ import annotations

import logging
import math

import numpy as np

from app import engine
from app.storage.base import (
    Batch,
    Query,
    SeriesPoints,
    Store,
)
from app.storage.sqldb import REGISTRY_SCHEMA, Registry, RegistryReads, SqliteDB

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

SEG_WIDTH = 9  # Summary fields without the head
POINT_COLS = "t, mean, min, max, last, count, covered, integral"
CHUNK = 500


def pack_segs(segs: tuple[engine.Summary, ...]) -> bytes:
    """Segments as little-endian float64 rows: compact, exact, no parsing cost."""
    return np.array([s[:SEG_WIDTH] for s in segs], dtype="<f8").tobytes()


def unpack_state(prev_ts: float | None, prev_val: float | None, blob: bytes) -> engine.State:
    arr = np.frombuffer(blob, dtype="<f8").reshape(-1, SEG_WIDTH)
    segs = tuple(engine.Summary(int(r[0]), *map(float, r[1:]), 0.0, 0.0) for r in arr)
    nan = math.nan
    return engine.State(
        nan if prev_ts is None else prev_ts, nan if prev_val is None else prev_val, segs
    )


class SqliteStore(RegistryReads, Store):
    """Windows, their mergeable state, the 30-minute series and optional raw samples."""

    def __init__(self, path: str, hold: float, retention: dict[str, float]) -> None:
        self.db = SqliteDB(path, SCHEMA)
        self.registry = Registry(self.db)
        self.hold = hold
        self.retention = retention  # keys: raw, 30s, 30m (seconds; raw 0 = not kept)

    def write(self, batch: Batch) -> int:
        s = batch.summaries
        bounds = np.searchsorted(s.sid, np.arange(len(batch.keys) + 1))
        with self.db.tx() as con:
            ids, fresh = self.registry.ids(con, batch.host, batch.keys, batch.units)
            stored: dict[tuple[int, int], engine.State] = {}
            for k, sid in enumerate(ids):
                a, b = bounds[k], bounds[k + 1]
                if a == b:
                    continue
                rows = con.execute(
                    "SELECT t, prev_ts, prev_val, segs FROM w30 "
                    "WHERE series_id=? AND t BETWEEN ? AND ?",
                    (sid, int(s.label[a]), int(s.label[b - 1])),
                ).fetchall()
                for t, pts, pv, blob in rows:
                    stored[(k, t)] = unpack_state(pts, pv, blob)
            merged, states = engine.merge_into(s, stored, self.hold)
            w = engine.finalize(merged, self.hold)
            keep = np.flatnonzero(w.covered > 0)
            sids = np.asarray(ids, dtype=np.int64)[merged.sid]
            con.executemany(
                "INSERT OR REPLACE INTO w30 VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        int(sids[i]),
                        int(merged.label[i]),
                        float(w.mean[i]),
                        float(w.min[i]),
                        float(w.max[i]),
                        float(w.last[i]),
                        int(w.count[i]),
                        float(w.covered[i]),
                        float(w.integral[i]),
                        None if math.isnan(states[i].prev_ts) else states[i].prev_ts,
                        None if math.isnan(states[i].prev_val) else states[i].prev_val,
                        pack_segs(states[i].segs),
                    )
                    for i in keep.tolist()
                ],
            )
            if self.retention.get("raw", 0) > 0:
                con.executemany(
                    "INSERT OR IGNORE INTO raw VALUES (?,?,?)",
                    zip(
                        np.asarray(ids, dtype=np.int64)[batch.raw_sid].tolist(),
                        batch.raw_ts.tolist(),
                        batch.raw_val.tolist(),
                        strict=True,
                    ),
                )
            self.registry.update_latest(
                con, ids, batch.latest_ts.tolist(), batch.latest_val.tolist()
            )
        self.registry.keep(fresh)  # only ids whose transaction committed
        return len(keep)

    def query(self, q: Query) -> list[SeriesPoints]:
        table = "w30" if q.resolution == "30s" else "w30m"
        out = []
        for sid, metric, tags, unit in self.registry.find(q.host, q.metric, q.tags, q.unit):
            rows = self.db.read(
                f"SELECT {POINT_COLS} FROM {table} WHERE series_id=? AND t>? AND t<=? ORDER BY t",
                (sid, q.start, q.end),
            )
            cols = list(zip(*rows, strict=True)) if rows else [()] * 8
            out.append(
                SeriesPoints(
                    metric,
                    tags,
                    unit,
                    np.asarray(cols[0], dtype=np.int64),
                    *(np.asarray(c, dtype=np.float64) for c in cols[1:5]),
                    np.asarray(cols[5], dtype=np.int64),
                    *(np.asarray(c, dtype=np.float64) for c in cols[6:]),
                )
            )
        return out

    def ping(self) -> None:
        self.db.read("SELECT 1")

    def run_jobs(self, now: float) -> dict[str, int]:
        """Refresh the 30-minute windows touching the last hour, then drop expired rows."""
        ids = self.registry.all_ids()
        first = math.floor((now - 3600) / engine.WINDOW_30M) * engine.WINDOW_30M
        last_label = math.ceil(now / engine.WINDOW_30M) * engine.WINDOW_30M
        written = deleted = 0
        for c in range(0, len(ids), CHUNK):
            chunk = ids[c : c + CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self.db.read(
                f"SELECT series_id, t, min, max, last, count, covered, integral FROM w30 "
                f"WHERE series_id IN ({marks}) AND t>? AND t<=? ORDER BY series_id, t",
                (*chunk, first, last_label),
            )
            out = []
            if rows:
                a = np.array(rows, dtype=np.float64)
                starts = np.flatnonzero(np.append(True, a[1:, 0] != a[:-1, 0]))
                for lo, hi in zip(starts, [*starts[1:], len(a)], strict=True):
                    part = a[lo:hi]
                    d = engine.downsample(
                        part[:, 1].astype(np.int64),
                        part[:, 2],
                        part[:, 3],
                        part[:, 4],
                        part[:, 5],
                        part[:, 6],
                        part[:, 7],
                    )
                    for j in range(len(d["label"])):
                        out.append(
                            (
                                int(part[0, 0]),
                                int(d["label"][j]),
                                *tuple(float(d[f][j]) for f in ("mean", "min", "max", "last")),
                                int(d["count"][j]),
                                float(d["covered"][j]),
                                float(d["integral"][j]),
                            )
                        )
            with self.db.tx() as con:
                con.executemany("INSERT OR REPLACE INTO w30m VALUES (?,?,?,?,?,?,?,?,?)", out)
                written += len(out)
                for sid in chunk:
                    for table, col, key in (
                        ("w30", "t", "30s"),
                        ("w30m", "t", "30m"),
                        ("raw", "ts", "raw"),
                    ):
                        keep = self.retention.get(key, 0)
                        cutoff = math.inf if table == "raw" and keep <= 0 else now - keep
                        deleted += con.execute(
                            f"DELETE FROM {table} WHERE series_id=? AND {col}<?", (sid, cutoff)
                        ).rowcount
        return {"downsampled": written, "expired": deleted}

    def close(self) -> None:
        self.db.close()
