"""Crash-safe on-disk spool (SQLite, WAL) of batches not yet acknowledged, and the journal.

A batch is committed here (synchronous=FULL) before the first attempt to send it and deleted
only after the API answered 2xx; a batch sent but not acknowledged is sent again
byte-identical (the API makes that idempotent). Every round's points are committed to the
journal table (synchronous=NORMAL: in the WAL, in the OS's cache) before the next round, and
a window's journal rows are deleted in the very transaction that spools its batch: a kill -9
at any moment finds each sample in exactly one place. A corrupt file is moved aside; a full
disk drops the oldest batches to make room (counted as `dropped`).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from agent import reserve

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    window REAL NOT NULL,
    created REAL NOT NULL,
    body BLOB NOT NULL,
    nbytes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_order ON batches (window, id);
CREATE TABLE IF NOT EXISTS carry (series TEXT PRIMARY KEY, ts REAL NOT NULL, value REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY, window REAL NOT NULL, rows TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS journal_keys (
    id INTEGER PRIMARY KEY, key TEXT NOT NULL, unit TEXT NOT NULL
);
"""
DB_FILE = "spool.db"
CORRUPT_DIR = "corrupt"
MAX_DROPS_FOR_ROOM = 20  # batches dropped at most to make room for one write on a full disk


def disk_full(exc: BaseException) -> bool:
    """SQLite's SQLITE_FULL: the file system (or the database's page limit) has no room."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_FULL


def corrupt(exc: BaseException) -> bool:
    """The file is not a database, or a damaged one (not: locked, busy, full, read-only)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


LOCK_FILE = "agent.lock"


class SpoolBusy(RuntimeError):
    """Another live process holds this spool: two senders would send every batch twice."""

    def __init__(self, directory: Path, holder: str) -> None:
        super().__init__(
            f"spool directory {directory} is in use by another agent ({holder}); two agents on "
            "one spool would send every batch twice: stop the other one or give this one "
            "its own FLEETPULSE_SPOOL_DIR"
        )
        self.directory = directory


class SpoolLock:
    """An exclusive flock on DIR/agent.lock, held while this object lives.

    The kernel drops it when the process ends however it ends (even SIGKILL), so a crashed
    agent never blocks its restart; the file holds the owner's pid for the message.
    """

    def __init__(self, directory: str | Path) -> None:
        import fcntl

        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / LOCK_FILE
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raw = os.pread(self._fd, 64, 0).decode("ascii", "replace").strip()
            self.release()
            raise SpoolBusy(self.dir, f"pid {raw}" if raw.isdigit() else "pid unknown") from None
        except BaseException:
            self.release()
            raise
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        """Let another agent take the spool (closing the file drops the lock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Spool:
    """Oldest-first queue of gzip batch bodies, bounded by count and bytes (oldest dropped)."""

    def __init__(self, directory: str | Path, max_batches: int = 10000, max_bytes: int = 200 << 20):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dead_dir = self.dir / "deadletter"
        self.max_batches = max_batches
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        try:
            self._db = self._connect()
        except sqlite3.DatabaseError as exc:
            if not corrupt(exc):
                raise
            self._move_aside(str(exc))
            self._db = self._connect()
        self._reserved = reserve.make(self.dir)

    def _connect(self) -> sqlite3.Connection:
        """Open and check the database; raises DatabaseError (SQLITE_CORRUPT) when it is damaged."""
        db = sqlite3.connect(
            self.dir / DB_FILE, isolation_level=None, check_same_thread=False, timeout=30
        )
        try:
            db.execute("PRAGMA page_size=1024")  # a new file only: fewer bytes per commit
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(SCHEMA)
            problems = [row[0] for row in db.execute("PRAGMA quick_check(3)")]
            if problems != ["ok"]:
                exc = sqlite3.DatabaseError("; ".join(problems))
                exc.sqlite_errorcode = sqlite3.SQLITE_CORRUPT  # type: ignore[attr-defined]
                raise exc
        except BaseException:
            db.close()
            raise
        return db

    def _move_aside(self, reason: str) -> None:
        """Keep a damaged database (and its WAL) for a person to look at; start an empty one."""
        dest = self.dir / CORRUPT_DIR / time.strftime("%Y%m%dT%H%M%S")
        dest.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            src = self.dir / (DB_FILE + suffix)
            if src.exists():
                os.replace(src, dest / src.name)
        log.error(
            "spool database %s is corrupt (%s): moved aside to %s; starting an empty spool "
            "(the batches and journal it held are not sent)", self.dir / DB_FILE, reason, dest,
        )  # fmt: skip

    def close(self) -> None:
        """Close the database (everything is already committed)."""
        with self._lock:
            self._db.close()

    def put(self, window: float, body: bytes, carry: dict[str, tuple[float, float]]) -> int:
        """Commit a batch, its series' new carries and the end of its window's journal at once.

        Returns how many batches were dropped (the bound, or a full disk). Raises
        sqlite3.Error when it cannot be written: the window's journal rows then stay.
        """
        dropped = [0]

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO batches (window, created, body, nbytes) VALUES (?, ?, ?, ?)",
                (window, time.time(), body, len(body)),
            )
            db.executemany(
                "INSERT OR REPLACE INTO carry (series, ts, value) VALUES (?, ?, ?)",
                [(k, p[0], p[1]) for k, p in carry.items()],
            )
            # a carry older than a day holds nothing any more (the API's hold limit is 90 s)
            db.execute("DELETE FROM carry WHERE ts < ?", (time.time() - 86400,))
            db.execute("DELETE FROM journal WHERE window = ?", (window,))
            dropped[0] = self._enforce_bound()

        with self._lock:
            room = self._write(write)
            if not self._reserved:  # once a window: the reserve again where the disk has room
                self._reserved = reserve.make(self.dir)
        if dropped[0]:
            log.warning("spool full: dropped the %d oldest batch(es)", dropped[0])
        return dropped[0] + room

    def journal(self, rows: dict[float, str], keys: Sequence[tuple[int, str, str]] = ()) -> int:
        """Commit one round (window -> encoded points) before the next round is taken.

        synchronous=NORMAL: in the WAL, so a killed process loses nothing; a power cut can lose
        the rounds since the last fsync (the next batch spooled or acknowledged). Returns how
        many batches a full disk made it drop; raises sqlite3.Error when it cannot be written.
        """

        def write(db: sqlite3.Connection) -> None:
            db.executemany("INSERT INTO journal_keys (id, key, unit) VALUES (?, ?, ?)", keys)
            db.executemany("INSERT INTO journal (window, rows) VALUES (?, ?)", rows.items())

        with self._lock:
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                return self._write(write)
            finally:
                self._db.execute("PRAGMA synchronous=FULL")

    def journal_rows(self) -> list[tuple[float, str]]:
        """The journaled rounds not yet in a batch, oldest first: (window, encoded points)."""
        with self._lock:
            return self._db.execute("SELECT window, rows FROM journal ORDER BY id").fetchall()

    def journal_keys(self) -> dict[int, tuple[str, str]]:
        """The series the journal's rows name by number: id -> (series key, unit)."""
        with self._lock:
            rows = self._db.execute("SELECT id, key, unit FROM journal_keys").fetchall()
        return {i: (k, u) for i, k, u in rows}

    def rewrite_journal(self, rows: dict[float, str], keys: Sequence[tuple[int, str, str]]) -> None:
        """Replace the journal (a restart re-files it under the windows it uses now)."""

        def write(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM journal")
            db.execute("DELETE FROM journal_keys")
            db.executemany("INSERT INTO journal_keys (id, key, unit) VALUES (?, ?, ?)", keys)
            db.executemany("INSERT INTO journal (window, rows) VALUES (?, ?)", rows.items())

        with self._lock:
            self._write(write)

    def _write(self, write: Callable[[sqlite3.Connection], None]) -> int:
        """Run write in one transaction; on a full disk drop the oldest batch and try again.

        Returns how many batches were dropped for room. Caller holds self._lock.
        """
        db, dropped = self._db, 0
        while True:
            try:
                db.execute("BEGIN IMMEDIATE")
                write(db)
                db.execute("COMMIT")
                return dropped
            except BaseException as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if not disk_full(exc):
                    raise
                if self._reserved and reserve.release(self.dir):
                    self._reserved = False  # the room it gave lets the drops below be written
                    continue
                if dropped >= MAX_DROPS_FOR_ROOM or not self._drop_oldest():
                    raise
                dropped += 1
                log.warning("disk full: dropped the oldest spooled batch to make room")

    def _enforce_bound(self) -> int:
        db = self._db
        count, size = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(nbytes), 0) FROM batches"
        ).fetchone()
        dropped = 0
        while count > 1 and (count > self.max_batches or size > self.max_bytes):
            row = db.execute(
                "SELECT id, nbytes FROM batches ORDER BY window, id LIMIT 1"
            ).fetchone()
            db.execute("DELETE FROM batches WHERE id = ?", (row[0],))
            count, size, dropped = count - 1, size - row[1], dropped + 1
        if dropped:
            self._count_dropped(dropped)
        return dropped

    def _drop_oldest(self) -> bool:
        """Delete the oldest batch and count it, for room on a full disk; False if none could be."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            gone = db.execute(
                "DELETE FROM batches WHERE id = "
                "(SELECT id FROM batches ORDER BY window, id LIMIT 1)"
            ).rowcount
            if gone:
                self._count_dropped(gone)
            db.execute("COMMIT")
        except sqlite3.Error:
            if db.in_transaction:
                db.execute("ROLLBACK")
            return False
        return gone > 0

    def _count_dropped(self, n: int) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES ('dropped', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = value + excluded.value",
            (n,),
        )

    def oldest(self) -> tuple[int, float, bytes] | None:
        """The next batch to send: (id, window, body)."""
        with self._lock:
            return self._db.execute(
                "SELECT id, window, body FROM batches ORDER BY window, id LIMIT 1"
            ).fetchone()

    def ack(self, batch_id: int) -> None:
        """The API stored it: forget it."""
        with self._lock:
            self._db.execute("DELETE FROM batches WHERE id = ?", (batch_id,))

    def replace(self, batch_id: int, window: float, bodies: list[bytes]) -> None:
        """Swap one batch for several (413 split by series), atomically."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM batches WHERE id = ?", (batch_id,))
                db.executemany(
                    "INSERT INTO batches (window, created, body, nbytes) VALUES (?, ?, ?, ?)",
                    [(window, time.time(), b, len(b)) for b in bodies],
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def dead_letter(self, batch_id: int, body: bytes, status: int, reason: str) -> Path:
        """Move a batch the API refused (400) aside with the reason; it is never retried."""
        self.dead_dir.mkdir(parents=True, exist_ok=True)
        stem = self.dead_dir / f"{int(time.time() * 1000)}-{batch_id}"
        for suffix, data in (
            (".json.gz", body),
            (".reason.json", json.dumps({"status": status, "reason": reason}).encode()),
        ):
            tmp = stem.with_suffix(suffix + ".tmp")
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, str(stem) + suffix)
        self.ack(batch_id)
        return stem

    def pending(self) -> int:
        """Batches waiting for delivery."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM batches").fetchone()[0]

    def dropped(self) -> int:
        """Batches dropped because the spool was full, since the spool was created."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()
        return int(row[0]) if row else 0

    def carry(self) -> dict[str, tuple[float, float]]:
        """The last point spooled per series, so carries survive the agent's restarts."""
        with self._lock:
            rows = self._db.execute("SELECT series, ts, value FROM carry").fetchall()
        return {k: (ts, v) for k, ts, v in rows}
