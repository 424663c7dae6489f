"""SQLite plumbing shared by the embedded store and the metadata store (tokens, jobs, series)."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
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
        try:
            con = self.conn()
            # One IMMEDIATE transaction (it waits out other writers; IF NOT EXISTS makes it
            # idempotent): a deferred one could fail at once on a lock upgrade while the other
            # workers create the same tables at boot.
            try:
                con.executescript(f"BEGIN IMMEDIATE;\n{schema}\nCOMMIT;")
            except sqlite3.Error:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise _translate(e) from e

    def conn(self) -> sqlite3.Connection:
        """This thread's connection (a new one after fork: connections never cross processes)."""
        con = getattr(self._local, "con", None)
        if con is None or self._pid != os.getpid():
            self._pid = os.getpid()
            con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            _wait_out_locks(lambda: con.execute("PRAGMA journal_mode=WAL"))
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


def _wait_out_locks(step: Callable[[], object]) -> None:
    """Retry a step that SQLite fails at once with "database is locked", up to the busy timeout.

    Switching a file to WAL takes an exclusive lock without calling the busy handler: several
    gunicorn workers opening a fresh file at boot got "database is locked", and a worker that
    fails at boot makes gunicorn stop them all.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.002
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e).lower() or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


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
        # (host, (metric, tags)) -> (id, unit as stored); filled only after a commit (``keep``)
        self._ids: dict[tuple[str, SeriesKey], tuple[int, str | None]] = {}

    def ids(
        self, con: sqlite3.Connection, host: str, keys: list[SeriesKey], units: list[str | None]
    ) -> tuple[list[int], dict[tuple[str, SeriesKey], tuple[int, str | None]]]:
        """Ids for the batch's series, created on first sight, and a changed unit stored.

        Returns the ids and the cache entries to ``keep`` once the caller's transaction has
        committed: a rolled-back id would otherwise later name another series' row.
        """
        out = []
        fresh: dict[tuple[str, SeriesKey], tuple[int, str | None]] = {}
        for key, unit in zip(keys, units, strict=True):
            k = (host, key)
            hit = self._ids.get(k)
            if hit is not None and (unit is None or hit[1] == unit):
                out.append(hit[0])
                continue
            name = (host, key[0], tags_json(key[1]))
            row = con.execute(
                "SELECT id, unit FROM series WHERE host=? AND metric=? AND tags=?", name
            ).fetchone()
            if row is None:
                sid = con.execute(
                    "INSERT INTO series (host, metric, tags, unit) VALUES (?, ?, ?, ?)",
                    (*name, unit),
                ).lastrowid
                stored_unit = unit
            else:
                sid, stored_unit = row
                if unit is not None and stored_unit != unit:
                    con.execute("UPDATE series SET unit=? WHERE id=?", (unit, sid))
                    stored_unit = unit
            fresh[k] = (sid, stored_unit)
            out.append(sid)
        return out, fresh

    def keep(self, fresh: dict[tuple[str, SeriesKey], tuple[int, str | None]]) -> None:
        """Cache what ``ids`` found, once its transaction has committed."""
        self._ids.update(fresh)

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
