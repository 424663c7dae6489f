"""Per-token rate limiting (token bucket), so one misbehaving caller cannot starve the rest.

Under gunicorn the buckets live in memory shared by every worker (``SharedBuckets``: an
anonymous shared mapping the master makes before it forks), so a token gets its rate across
the whole server, whichever worker each request lands on. Anywhere else (the Flask test client,
one process) they live in a dict of the process (``LocalBuckets``).
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import struct
import tempfile
import threading
import time
from typing import Protocol


class Buckets(Protocol):
    """Where bucket states live: ``update`` applies a step to one key's (tokens, last)."""

    def update(self, key: str, step: _Step) -> float: ...


class _Step(Protocol):
    def __call__(self, state: tuple[float, float] | None) -> tuple[tuple[float, float], float]: ...


class LocalBuckets:
    """One process's buckets, bounded: past ``max_keys`` they all start full again."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def update(self, key: str, step: _Step) -> float:
        with self._lock:
            state, wait = step(self._buckets.get(key))
            if key not in self._buckets and len(self._buckets) >= self.max_keys:
                self._buckets.clear()  # bounded memory; full buckets are the safe default
            self._buckets[key] = state
            return wait


_EMPTY = bytes(16)


class SharedBuckets:
    """Buckets in one anonymous shared mapping, seen by every process forked after it is made.

    A fixed table of ``slots`` entries (key digest, tokens, last use), open addressing over
    ``PROBE`` slots; when those are all taken the least recently used one is reused (that
    token starts with a full bucket again). One POSIX record lock (``lockf``) on an unlinked
    temp file guards it: the kernel releases it when its holder dies, so a SIGKILLed worker
    never leaves the others waiting. ``time.monotonic`` is the system-wide CLOCK_MONOTONIC,
    so every process measures on the same clock.
    """

    SLOT = struct.Struct("<16sdd")
    PROBE = 16

    def __init__(self, slots: int = 65_536) -> None:
        self.slots = slots
        self._mem = mmap.mmap(-1, slots * self.SLOT.size)  # MAP_SHARED: fork keeps it shared
        self._lockfile = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the table
        self._threads = threading.Lock()  # lockf is per process; threads queue here first

    def update(self, key: str, step: _Step) -> float:
        digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
        start = int.from_bytes(digest[:8], "little") % self.slots
        size = self.SLOT.size
        with self._threads:
            fcntl.lockf(self._lockfile, fcntl.LOCK_EX)
            try:
                pick, state, oldest = start, None, math.inf
                for k in range(self.PROBE):
                    i = (start + k) % self.slots
                    d, tokens, last = self.SLOT.unpack_from(self._mem, i * size)
                    if d == digest:
                        pick, state = i, (tokens, last)
                        break
                    if d == _EMPTY:  # slots never empty again: nothing further can be ours
                        pick = i
                        break
                    if last < oldest:
                        pick, oldest = i, last
                (tokens, last), wait = step(state)
                self.SLOT.pack_into(self._mem, pick * size, digest, tokens, last)
                return wait
            finally:
                fcntl.lockf(self._lockfile, fcntl.LOCK_UN)


class RateLimiter:
    """``rate`` requests per second per key with bursts of ``burst``; rate 0 turns it off."""

    def __init__(self, rate: float, burst: float, buckets: Buckets | None = None) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.buckets: Buckets = buckets or LocalBuckets()

    def share(self, buckets: Buckets) -> None:
        """Move to buckets every worker sees (gunicorn.conf.py does it in each new worker)."""
        self.buckets = buckets

    def acquire(self, key: str, now: float | None = None) -> float:
        """0 when the request may go on, else the seconds to wait before trying again."""
        if self.rate <= 0:
            return 0.0
        t = time.monotonic() if now is None else now

        def step(state: tuple[float, float] | None) -> tuple[tuple[float, float], float]:
            tokens, last = state if state is not None else (self.burst, t)
            tokens = min(self.burst, tokens + max(0.0, t - last) * self.rate)
            if tokens >= 1.0:
                return (tokens - 1.0, t), 0.0
            return (tokens, t), (1.0 - tokens) / self.rate

        return self.buckets.update(key, step)


def retry_after(wait: float) -> str:
    """Whole seconds for the Retry-After header, never 0."""
    return str(max(1, math.ceil(wait)))
