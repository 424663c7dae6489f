"""Late 30-second points: the 30-minute windows whose 30-second points changed after the
refresh that re-covers recent time could have seen them (a spool drained after a long outage,
a backfill). A write marks them; the server's job recomputes them, whatever their age within
retention; until then reads compute them from the 30-second points.

Marks live beside the series registry. In the steady state (every write recent) nothing is
marked, so nothing extra is written or read.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np

from app.core import engine
from app.storage.metadb import Conn, MetaDB

LATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS late30m (
    series_id INTEGER NOT NULL,
    label INTEGER NOT NULL,
    marked INTEGER NOT NULL,
    PRIMARY KEY (series_id, label)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS refreshed (
    name TEXT PRIMARY KEY,
    until REAL NOT NULL
);
"""
# The refresh re-covers the last hour every 15 minutes, so a 30-second label newer than
# now - 1800 is still seen by a later refresh; 300 s less leaves room for clock skew.
LATE_AFTER = 1500.0
BATCH = 5000


def late_labels(ids: list[int], sid: np.ndarray, labels: np.ndarray, now: float, after: float):
    """(series id, 30-minute label) of the 30-second labels older than ``now - after``."""
    old = labels <= now - after
    if not old.any():
        return []
    big = (np.ceil(labels[old] / engine.WINDOW_30M) * engine.WINDOW_30M).astype(np.int64)
    sids = np.asarray(ids, dtype=np.int64)[sid[old]]
    return sorted(set(zip(sids.tolist(), big.tolist(), strict=True)))


class LateMarks:
    """The marks table: set on write, read by reads, taken and cleared by the job."""

    def __init__(self, db: MetaDB) -> None:
        self.db = db

    def mark(self, con: Conn, pairs: list[tuple[int, int]]) -> None:
        """Mark windows late, inside the write's registry transaction; marking again counts up
        (a counter, not a clock: a clock stepped back must not make a new mark look old)."""
        self.db.values(
            con,
            "INSERT INTO late30m (series_id, label, marked)",
            "ON CONFLICT(series_id, label) DO UPDATE SET marked=late30m.marked + excluded.marked",
            [(sid, label, n) for (sid, label), n in Counter(pairs).items()],  # one row a key
            ("bigint", "bigint", "bigint"),
        )

    def pending(self, ids: list[int], start: float, end: float) -> dict[int, set[int]]:
        """Marked labels in (start, end] per series id."""
        out: dict[int, set[int]] = defaultdict(set)
        for c in range(0, len(ids), 500):
            part = ids[c : c + 500]
            rows = self.db.read(
                f"SELECT series_id, label FROM late30m WHERE series_id IN "
                f"({','.join('?' * len(part))}) AND label > ? AND label <= ?",
                (*part, start, end),
            )
            for sid, label in rows:
                out[sid].add(label)
        return out

    def take(self) -> list[tuple[int, int, int]]:
        """The oldest marks, up to BATCH: (series id, label, marked)."""
        return self.db.read(
            "SELECT series_id, label, marked FROM late30m ORDER BY label LIMIT ?", (BATCH,)
        )

    def clear(self, rows: list[tuple[int, int, int]]) -> None:
        """Drop marks that were recomputed, unless a write marked them again since."""
        with self.db.tx() as con:
            con.executemany("DELETE FROM late30m WHERE series_id=? AND label=? AND marked<=?", rows)

    def refreshed_until(self, name: str) -> float | None:
        """When the refresh ``name`` last completed (None: never)."""
        rows = self.db.read("SELECT until FROM refreshed WHERE name=?", (name,))
        return rows[0][0] if rows else None

    def set_refreshed(self, name: str, until: float) -> None:
        """Note a completed refresh, so the next one re-covers everything since."""
        with self.db.tx() as con:
            con.execute(
                "INSERT INTO refreshed (name, until) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET until=CASE WHEN excluded.until > refreshed.until "
                "THEN excluded.until ELSE refreshed.until END",
                (name, until),
            )


def spans(labels: list[int], most: int = 12) -> list[tuple[int, int]]:
    """Contiguous runs of 30-minute labels as (first, last), each of at most ``most`` windows
    (one recompute stays small however long the outage was)."""
    out: list[list[int]] = []
    for lab in sorted(set(labels)):
        last = out[-1] if out else None
        if last and lab - last[1] <= engine.WINDOW_30M and lab - last[0] < most * engine.WINDOW_30M:
            last[1] = lab
        else:
            out.append([lab, lab])
    return [(a, b) for a, b in out]


def refresh_from(last: float | None, now: float) -> int:
    """The first 30-minute label start a refresh covers: the last hour, and everything since
    the last completed refresh (a server down for a while catches up at its next start)."""
    since = now - 3600 if last is None else min(last - 3600, now - 3600)
    return math.floor(since / engine.WINDOW_30M) * engine.WINDOW_30M
