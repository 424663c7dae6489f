"""Per-token rate limiting (token bucket), so one misbehaving caller cannot starve the rest.

Buckets live in each worker process: no shared state on the hot path. A caller that spreads
requests over every worker can reach at most ``workers`` times the rate; an agent on one
keep-alive connection stays on one worker.
"""

from __future__ import annotations

import math
import threading
import time


class RateLimiter:
    """``rate`` requests per second per key with bursts of ``burst``; rate 0 turns it off."""

    def __init__(self, rate: float, burst: float, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str, now: float | None = None) -> float:
        """0 when the request may go on, else the seconds to wait before trying again."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._remember(key, (tokens - 1.0, now))
                return 0.0
            self._remember(key, (tokens, now))
            return (1.0 - tokens) / self.rate

    def _remember(self, key: str, value: tuple[float, float]) -> None:
        if key not in self._buckets and len(self._buckets) >= self.max_keys:
            self._buckets.clear()  # bounded memory; full buckets are the safe default
        self._buckets[key] = value


def retry_after(wait: float) -> str:
    """Whole seconds for the Retry-After header, never 0."""
    return str(max(1, math.ceil(wait)))
