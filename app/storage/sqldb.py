"""SQLite plumbing shared by the embedded store, the registry and the metadata store."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from app.core.errors import StorageFull, StorageUnavailable
from app.storage.locks import HostLocks

BUSY_TIMEOUT_MS = 10_000


class SqliteDB:
    """One connection per thread to one SQLite file in WAL mode, safe across gunicorn workers."""

    dialect = "sqlite"

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

    def section_tx(self, lock: object) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A write transaction inside a host's write section (the flock is separate)."""
        return self.tx()

    def values(
        self, con: sqlite3.Connection, head: str, tail: str, rows: list[tuple], types: tuple
    ) -> list[tuple]:
        """``head VALUES (?, ...), ... tail`` (columns ``column1``...), 400 rows a statement:
        one statement instead of executemany's one per row; the rows a RETURNING gives."""
        out: list[tuple] = []
        marks = "(" + ", ".join("?" * len(types)) + ")"
        for c in range(0, len(rows), 400):
            part = rows[c : c + 400]
            sql = f"{head} VALUES {', '.join([marks] * len(part))} {tail}"
            out += con.execute(sql, [x for row in part for x in row]).fetchall()
        return out

    def read(self, sql: str, args: tuple = ()) -> list[tuple]:
        """Rows of one query, outside any write transaction (WAL readers never block)."""
        try:
            return self.conn().execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise _translate(e) from e

    def exclusive(self, con: sqlite3.Connection, key: str) -> None:
        """Nothing to take: every write transaction here is already exclusive (IMMEDIATE)."""

    def host_locks(self) -> HostLocks:
        """Per-host write locks across this node's workers: flock on files beside the file."""
        return HostLocks(Path(self.path).parent / "influx-locks")

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


def rows_in(run: Callable[[str, list], list], sql: str, ids: list[int]) -> list:
    """``sql`` (with ``{marks}`` in its ``IN (...)``) run over ``ids`` in chunks SQLite takes."""
    uniq = list(dict.fromkeys(ids))
    out: list = []
    for c in range(0, len(uniq), 500):
        part = uniq[c : c + 500]
        out.extend(run(sql.format(marks=",".join("?" * len(part))), part))
    return out
