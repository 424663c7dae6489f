"""Per-host write serialisation across gunicorn workers: ``flock`` on one of 64 files."""

from __future__ import annotations

import fcntl
import os
import threading
import time
import zlib
from pathlib import Path

from app.core.errors import StorageUnavailable

LOCK_SLOTS = 64


class HostLocks:
    """Serialise read-merge-write per host across workers: flock on one of 64 files."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._fds: dict[int, int] = {}
        self._pid = os.getpid()
        self._thread_locks = [threading.Lock() for _ in range(LOCK_SLOTS)]

    def _fd(self, slot: int) -> int:
        if self._pid != os.getpid():
            self._fds, self._pid = {}, os.getpid()  # flock fds must not be shared after fork
        fd = self._fds.get(slot)
        if fd is None:
            fd = os.open(self.dir / f"{slot:02d}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            self._fds[slot] = fd
        return fd

    def acquire(self, host: str, timeout: float) -> int:
        """Take the host's slot within ``timeout``, else StorageUnavailable (no request hangs)."""
        slot = zlib.crc32(host.encode()) % LOCK_SLOTS
        deadline = time.monotonic() + timeout
        if not self._thread_locks[slot].acquire(timeout=timeout):
            raise StorageUnavailable("another request for this host is still being stored")
        fd = self._fd(slot)
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return slot
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self._thread_locks[slot].release()
                    raise StorageUnavailable(
                        "another request for this host is still being stored"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.02)

    def check(self, slot: int) -> None:
        """A flock lives as long as this process: nothing can take it away."""

    def release(self, slot: int) -> None:
        fcntl.flock(self._fd(slot), fcntl.LOCK_UN)
        self._thread_locks[slot].release()

    def close(self) -> None:
        if self._pid == os.getpid():
            for fd in self._fds.values():
                os.close(fd)
        self._fds = {}
