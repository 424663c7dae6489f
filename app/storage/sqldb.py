"""SQLite plumbing shared by the embedded store and the metadata store (tokens, jobs, series)."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from app.storage.base import HostSummary, SeriesKey, SeriesState, StorageFull, StorageUnavailable

BUSY_TIMEOUT_MS = 10_000


class SqliteDB:
    """One connection per thread to one SQLite file in WAL mode, safe across gunicorn workers."""

    def __init__(self, path: str, schema: str) -> None:
        self.path = path
        self._schema = schema
        self._local = threading.local()
        self._pid = os.getpid()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:  # executescript runs in its own transaction; IF NOT EXISTS makes it idempotent
            self.conn().executescript(schema)
        except sqlite3.Error as e:
            raise _translate(e) from e

    def conn(self) -> sqlite3.Connection:
        """This thread's connection (a new one after fork: connections never cross processes)."""
        con = getattr(self._local, "con", None)
        if con is None or self._pid != os.getpid():
            self._pid = os.getpid()
            con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            self._local.con = con
        return con

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken up front (BEGIN IMMEDIATE), so merges never interleave."""
        con = self.conn()
        try:
            con.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise _translate(e) from e
        try:
            yield con
            con.execute("COMMIT")
        except BaseException as e:
            with contextlib.suppress(sqlite3.Error):
                con.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                raise _translate(e) from e
            raise

    def read(self, sql: str, args: tuple = ()) -> list[tuple]:
        """Rows of one query, outside any write transaction (WAL readers never block)."""
        try:
            return self.conn().execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise _translate(e) from e

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None


def _translate(e: sqlite3.Error) -> Exception:
    msg = str(e).lower()
    if "full" in msg or "disk i/o" in msg:
        return StorageFull(str(e))
    if isinstance(e, sqlite3.OperationalError):
        return StorageUnavailable(str(e))
    return e


REGISTRY_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    host TEXT NOT NULL,
    metric TEXT NOT NULL,
    tags TEXT NOT NULL,
    unit TEXT,
    last_ts REAL,
    last_value REAL,
    UNIQUE (host, metric, tags)
);
"""


def tags_json(tags: tuple[tuple[str, str], ...]) -> str:
    """Canonical text of a tag set: the series identity is (host, metric, tags)."""
    return json.dumps(dict(tags), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Registry:
    """Series ids and each series' newest sample (the farm monitor's "state table")."""

    def __init__(self, db: SqliteDB) -> None:
        self.db = db
        self._ids: dict[tuple[str, str, str], int] = {}

    def ids(
        self, con: sqlite3.Connection, host: str, keys: list[SeriesKey], units: list[str | None]
    ) -> list[int]:
        """Ids for the batch's series, created on first sight; units kept as metadata."""
        out = []
        for (metric, tags), unit in zip(keys, units, strict=True):
            k = (host, metric, tags_json(tags))
            sid = self._ids.get(k)
            if sid is None:
                row = con.execute(
                    "SELECT id, unit FROM series WHERE host=? AND metric=? AND tags=?", k
                ).fetchone()
                if row is None:
                    # Not cached: this row exists only if the caller's transaction commits
                    # (a rolled-back id would later name another series' row).
                    sid = con.execute(
                        "INSERT INTO series (host, metric, tags, unit) VALUES (?, ?, ?, ?)",
                        (*k, unit),
                    ).lastrowid
                else:
                    sid = row[0]
                    if unit is not None and row[1] != unit:
                        con.execute("UPDATE series SET unit=? WHERE id=?", (unit, sid))
                    self._ids[k] = sid
            out.append(sid)
        return out

    def update_latest(
        self, con: sqlite3.Connection, ids: list[int], ts: list[float], vals: list[float]
    ) -> None:
        """Keep the newest sample per series; older retries never move it back."""
        con.executemany(
            "UPDATE series SET last_ts=?, last_value=? WHERE id=? AND "
            "(last_ts IS NULL OR last_ts <= ?)",
            [(t, v, i, t) for i, t, v in zip(ids, ts, vals, strict=True)],
        )

    def find(
        self, host: str, metric: str | None, tags: dict[str, str], unit: str | None
    ) -> list[tuple[int, str, dict[str, str], str | None]]:
        """Series of a host matching metric, a tag filter and a unit."""
        sql = "SELECT id, metric, tags, unit FROM series WHERE host=?"
        args: list = [host]
        if metric is not None:
            sql += " AND metric=?"
            args.append(metric)
        if unit is not None:
            sql += " AND unit=?"
            args.append(unit)
        out = []
        for sid, m, tj, u in self.db.read(sql + " ORDER BY metric, tags", tuple(args)):
            t = json.loads(tj)
            if all(t.get(k) == v for k, v in tags.items()):
                out.append((sid, m, t, u))
        return out

    def hosts(self) -> list[tuple[str, float, int]]:
        return self.db.read(
            "SELECT host, MAX(last_ts), COUNT(*) FROM series GROUP BY host ORDER BY host"
        )

    def state(self, host: str) -> list[tuple[str, dict, str | None, float, float]]:
        rows = self.db.read(
            "SELECT metric, tags, unit, last_ts, last_value FROM series WHERE host=? "
            "AND last_ts IS NOT NULL ORDER BY metric, tags",
            (host,),
        )
        return [(m, json.loads(t), u, ts, v) for m, t, u, ts, v in rows]

    def all_ids(self) -> list[int]:
        return [r[0] for r in self.db.read("SELECT id FROM series")]


class RegistryReads:
    """The host reads both stores answer from the registry: /hosts and /hosts/H."""

    registry: Registry

    def hosts(self) -> list[HostSummary]:
        return [HostSummary(h, ts, n) for h, ts, n in self.registry.hosts() if ts is not None]

    def host_state(self, host: str) -> list[SeriesState] | None:
        rows = self.registry.state(host)
        return [SeriesState(*r) for r in rows] if rows else None
