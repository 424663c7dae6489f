"""Helpers shared by collectors: counter-delta rates."""

from __future__ import annotations


class RateTracker:
    """Turn monotonically increasing counters into per-second rates between rounds."""

    def __init__(self) -> None:
        self._last: dict[object, tuple[float, float]] = {}

    def rate(self, key: object, counter: float, mono: float) -> float | None:
        """Rate since the previous call for key; None on the first call or a counter reset."""
        prev = self._last.get(key)
        self._last[key] = (counter, mono)
        if prev is None:
            return None
        dc, dt = counter - prev[0], mono - prev[1]
        if dt <= 0 or dc < 0:
            return None
        return dc / dt

    def forget_except(self, keys: set[object]) -> None:
        """Drop state of vanished devices so the table does not grow forever."""
        for key in [k for k in self._last if k not in keys]:
            del self._last[key]
