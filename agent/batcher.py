"""One batch per 30-s window (CONTRACT section 3), each series with its carry."""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterable

from agent.samples import Sample, valid_sample

SeriesKey = str
Point = tuple[float, float]
# one accepted point as the journal keeps it: (series key, unit, ts, value)
Row = tuple[SeriesKey, str, float, float]


def series_key(metric: str, tags: dict[str, str]) -> SeriesKey:
    """A stable text key for a series identity (metric, tags); also the spool's carry key."""
    return metric + "\x00" + json.dumps(tags, sort_keys=True, separators=(",", ":"))


def encode(payload: dict) -> bytes:
    """Gzip with mtime 0 so the same batch always has the same bytes."""
    raw = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
    return gzip.compress(raw, compresslevel=6, mtime=0)


def decode(body: bytes) -> dict:
    """Inverse of encode (413 splitting, dead letters, tests)."""
    return json.loads(gzip.decompress(body))


class Batcher:
    """Holds the open windows in memory; a closed window becomes one immutable batch body."""

    def __init__(
        self, host: str, window: float = 30.0, carry: dict[SeriesKey, Point] | None = None
    ) -> None:
        self.host = host
        self.window = window
        self._carry: dict[SeriesKey, Point] = dict(carry or {})
        self._last_ts: dict[SeriesKey, float] = {k: p[0] for k, p in self._carry.items()}
        self._meta: dict[SeriesKey, tuple[str, dict[str, str], str]] = {}
        self._open: dict[float, dict[SeriesKey, list[Point]]] = {}
        self.rejected = 0
        self.accepted = 0  # points filed under a window since start (each is spooled once)

    def window_of(self, ts: float) -> float:
        """Start of the epoch-aligned window holding ts."""
        return math.floor(ts / self.window) * self.window

    def add(self, samples: Iterable[Sample]) -> dict[float, list[Row]]:
        """File samples under their window; out-of-order or invalid ones are dropped and counted.

        Returns the accepted points by window: the round the journal writes before the next one.
        """
        rows: dict[float, list[Row]] = {}
        for s in samples:
            if not valid_sample(s):
                self.rejected += 1
                continue
            key = series_key(s.metric, s.tags)
            ts = round(s.ts, 3)
            last = self._last_ts.get(key)
            if last is not None and ts <= last:
                self.rejected += 1  # the API requires strictly increasing timestamps
                continue
            self._last_ts[key] = ts
            self.accepted += 1
            if key not in self._meta:
                self._meta[key] = (s.metric, dict(s.tags), s.unit)
            window, value = self.window_of(ts), float(s.value)
            self._open.setdefault(window, {}).setdefault(key, []).append((ts, value))
            rows.setdefault(window, []).append((key, s.unit, ts, value))
        return rows

    def restore(self, rows: Iterable[Row]) -> dict[float, list[Row]]:
        """Re-file journaled points (a restart); returns them by window as filed now.

        A point not after its series' last one (already in a spooled batch) is left out, so
        nothing is sent twice.
        """
        filed: dict[float, list[Row]] = {}
        for key, unit, ts, value in rows:
            last = self._last_ts.get(key)
            if last is not None and ts <= last:
                continue
            metric, _, tags = key.partition("\x00")
            self._last_ts[key] = ts
            self.accepted += 1
            self._meta.setdefault(key, (metric, json.loads(tags), unit))
            window = self.window_of(ts)
            self._open.setdefault(window, {}).setdefault(key, []).append((ts, value))
            filed.setdefault(window, []).append((key, unit, ts, value))
        return filed

    def closed(self, now: float) -> list[float]:
        """Windows whose end has passed, oldest first."""
        return sorted(w for w in self._open if w + self.window <= now)

    def open_windows(self) -> list[float]:
        """Every window still held, oldest first (the shutdown flush takes them all)."""
        return sorted(self._open)

    def take(self, window: float) -> tuple[bytes, dict[SeriesKey, Point], int] | None:
        """Remove a window and build its body; returns (gzip body, new carries, point count)."""
        series_points = self._open.pop(window, None)
        if not series_points:
            return None
        series = []
        new_carry: dict[SeriesKey, Point] = {}
        count = 0
        for key in sorted(series_points):
            points = series_points[key]
            metric, tags, unit = self._meta[key]
            item: dict = {"metric": metric, "tags": tags, "unit": unit}
            carry = self._carry.get(key)
            if carry is not None and carry[0] < points[0][0]:
                item["carry"] = list(carry)
            item["points"] = [list(p) for p in points]
            series.append(item)
            new_carry[key] = points[-1]
            count += len(points)
        self._carry.update(new_carry)
        return encode({"host": self.host, "series": series}), new_carry, count
