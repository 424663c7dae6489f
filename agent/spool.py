"""Crash-safe on-disk spool (SQLite, WAL, synchronous=FULL) of batches not yet acknowledged.

A batch is committed here before the first attempt to send it and deleted only after the
API answered 200, so a kill -9 at any moment loses at most the batch being written; a batch
sent but not acknowledged is sent again byte-identical (the API makes that idempotent).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

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
"""


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
        self._db = sqlite3.connect(
            self.dir / "spool.db", isolation_level=None, check_same_thread=False, timeout=30
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        """Close the database (everything is already committed)."""
        with self._lock:
            self._db.close()

    def put(self, window: float, body: bytes, carry: dict[str, tuple[float, float]]) -> int:
        """Commit a batch and its series' new carries at once; returns how many were dropped."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
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
                dropped = self._enforce_bound()
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        if dropped:
            log.warning("spool full: dropped the %d oldest batch(es)", dropped)
        return dropped

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
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('dropped', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = value + excluded.value",
                (dropped,),
            )
        return dropped

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
