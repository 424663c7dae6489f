"""Group commit: concurrent requests of one worker share one influxd /write (and its fsync).

A request thread hands its window lines to ``GroupWriter.write`` while it still holds its host's
lock, and returns only once a write that carried them has answered 204: the lines are stored
before the lock is released, exactly as with a write of its own. Whoever finds no write in
flight becomes the leader: it takes every queued body (up to ``max_bytes``), writes them as one,
and hands each rider the outcome. A failed shared write fails every request that rode on it;
a refusal that is not an outage (a 400 naming one bad line) is retried body by body, so one
request's bad line never fails the others.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from app.core.errors import StorageUnavailable

MAX_GROUP_BYTES = 8 * 1024 * 1024  # well under influxd's max-body-size (25 MB by default)


@dataclass(eq=False)
class _Ticket:
    """One request's lines and, once written, the outcome of the write that carried them."""

    body: bytes
    taken: bool = False
    done: bool = False
    error: BaseException | None = None


class GroupWriter:
    """Queue bodies from concurrent threads; one thread at a time writes all that are queued."""

    def __init__(self, write: Callable[[bytes], None], max_bytes: int = MAX_GROUP_BYTES) -> None:
        self._write = write
        self.max_bytes = max_bytes
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._queue: list[_Ticket] = []
        self._busy = False
        self.writes = 0  # shared writes made, for tests and the bench

    def pending(self) -> int:
        """Bodies queued and not yet taken by a write (tests gate on it)."""
        with self._cond:
            return len(self._queue)

    def write(self, body: bytes, timeout: float) -> None:
        """Return once ``body`` is stored by a shared write; raise what that write raised.

        ``timeout``: how long to wait for a turn. A body still queued then is withdrawn (never
        written later); one already in flight is waited for, as the writer's own deadline ends it.
        """
        if self._pid != os.getpid():
            self._reset()  # a forked child never shares its parent's queue or lock
        ticket = _Ticket(body)
        deadline = time.monotonic() + timeout
        with self._cond:
            self._queue.append(ticket)
            while not ticket.done:
                if not self._busy:
                    self._lead()
                    continue
                left = deadline - time.monotonic()
                if left <= 0 and not ticket.taken:
                    self._queue.remove(ticket)
                    raise StorageUnavailable("influxdb write did not get its turn in time")
                self._cond.wait(max(left, 0.05))
        if ticket.error is not None:
            raise _for_rider(ticket.error)

    def _lead(self) -> None:
        """Write the queued bodies as one (called with the condition held; released meanwhile)."""
        batch, size = [], 0
        while self._queue and (not batch or size + len(self._queue[0].body) <= self.max_bytes):
            t = self._queue.pop(0)
            t.taken = True
            batch.append(t)
            size += len(t.body)
        self._busy = True
        self._cond.release()
        try:
            self._run(batch)
        finally:
            self._cond.acquire()
            for t in batch:
                t.done = True
            self._busy = False
            self._cond.notify_all()

    def _run(self, batch: list[_Ticket]) -> None:
        """One write for the batch; on a refusal that is not an outage, one write per body."""
        try:
            self.writes += 1
            self._write(b"".join(t.body for t in batch))
            return
        except StorageUnavailable as e:
            err: BaseException = e
        except Exception as e:
            if len(batch) == 1:
                batch[0].error = e
                return
            for t in batch:  # isolate the body influxd refuses; the others are stored
                t.error = self._alone(t.body)
            return
        except BaseException as e:  # the leader is being stopped: every rider fails, it raises
            for t in batch:
                t.error = StorageUnavailable("the shared influxdb write was interrupted")
            raise e
        for t in batch:
            t.error = err

    def _alone(self, body: bytes) -> Exception | None:
        try:
            self.writes += 1
            self._write(body)
            return None
        except Exception as e:
            return e


def _for_rider(err: BaseException) -> BaseException:
    """A fresh exception per request (one instance raised in several threads would share its
    traceback); an outage stays StorageUnavailable (503 + Retry-After)."""
    if isinstance(err, StorageUnavailable):
        return StorageUnavailable(str(err))
    return RuntimeError(f"influxdb write failed: {err}")
