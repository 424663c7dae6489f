"""Our agents' JSON (CONTRACT.md section 3) -> one ``Batch``: the envelope through marshmallow,
the points vectorised with numpy. Everything is checked before anything is stored, and every
bad field is named by its path."""

from __future__ import annotations

import math

import numpy as np
from marshmallow import ValidationError

from app.core import engine
from app.core.errors import Invalid, TooLarge
from app.core.records import Batch, SeriesKey
from app.core.times import format_rfc3339
from app.ingest import Limits
from app.ingest.body import decode_json
from app.ingest.envelope import EnvelopeLoader
from app.ingest.points import carry_pair, split_points, timestamps
from app.ingest.problems import MAX_DETAILS, Problems, cap, summary
from app.ingest.schema import flatten_errors

# Finite values beyond this would overflow float64 in the integrals (value x seconds, summed over
# windows) and come back as null means; 1e300 x 1800 s x 10,000 windows still fits.
MAX_ABS_VALUE = 1e300


class JsonSamples:
    """The decoder of ``POST /api/v1/samples``; one per worker (it learns series headers)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.envelope = EnvelopeLoader()

    def load(self, body: bytes, encoding: str | None) -> object:
        """The decoded JSON document, before any check of its shape."""
        return decode_json(body, encoding, self.limits.max_body_bytes)

    def to_batch(self, data: object, now: float) -> Batch:
        """Validate a decoded document; raises Invalid (every bad field) or TooLarge."""
        doc = self._envelope(data)
        series = doc["series"]
        total = sum(len(s["points"]) if isinstance(s["points"], list) else 0 for s in series)
        if total > self.limits.max_points:
            raise TooLarge(f"{total} points in one request; the limit is {self.limits.max_points}")
        problems = Problems()
        keys, ts_parts, val_parts, carries = self._columns(series, problems)
        counts = np.fromiter((len(p) for p in ts_parts), dtype=np.int64, count=len(ts_parts))
        ts = timestamps(ts_parts)
        val = np.fromiter(
            (v for part in val_parts for v in part), dtype=np.float64, count=int(counts.sum())
        )
        sid = np.repeat(np.arange(len(series), dtype=np.int64), counts)
        self._check_points(sid, ts, val, counts, now, problems)
        carry_ts, carry_val = self._check_carries(carries, ts, counts, now, problems)
        problems.raise_if_any()
        return Batch(
            host=doc["host"],
            keys=keys,
            units=[s["unit"] for s in series],
            sid=sid,
            ts=ts,
            val=val,
            carry_ts=carry_ts,
            carry_val=carry_val,
        )

    def _envelope(self, data: object) -> dict:
        """The envelope through the schema; a refusal names the bad points too, in one answer."""
        if not isinstance(data, dict):
            raise Invalid("body must be a JSON object", {"_body": ["expected an object"]})
        try:
            return self.envelope.load(data)
        except ValidationError as e:
            details = Problems(flatten_errors(e.messages))
            raw_series = data.get("series")
            if isinstance(raw_series, list):
                for i, s in enumerate(raw_series):
                    if isinstance(s, dict) and f"series.{i}.points" not in details:
                        split_points(s.get("points"), f"series.{i}.points", details)
            raise Invalid(summary(details), cap(details)) from e

    @staticmethod
    def _columns(series: list[dict], problems: Problems) -> tuple[list, list, list, list]:
        keys: list[SeriesKey] = []
        seen: dict[SeriesKey, int] = {}
        ts_parts, val_parts, carries = [], [], []
        for i, s in enumerate(series):
            key = (s["metric"], tuple(sorted(s["tags"].items())))
            if key in seen:
                problems.add(f"series.{i}", f"same metric and tags as series.{seen[key]}")
            seen[key] = i
            keys.append(key)
            ts_raw, vals = split_points(s["points"], f"series.{i}.points", problems)
            ts_parts.append(ts_raw)
            val_parts.append(vals)
            carries.append(carry_pair(s["carry"], f"series.{i}.carry", problems))
        return keys, ts_parts, val_parts, carries

    def _check_points(
        self,
        sid: np.ndarray,
        ts: np.ndarray,
        val: np.ndarray,
        counts: np.ndarray,
        now: float,
        problems: Problems,
    ) -> None:
        offsets = np.concatenate([[0], np.cumsum(counts)])
        idx = np.arange(len(ts)) - offsets[sid]

        def bad(mask: np.ndarray, reason: str) -> None:
            for j in np.flatnonzero(mask)[:MAX_DETAILS].tolist():
                problems.add(f"series.{sid[j]}.points.{idx[j]}", reason)

        # JSON numbers are finite (orjson refuses NaN and overflow): a NaN here stands for a
        # point the type checks refused and named already, so it is compared with nothing.
        bad(np.abs(val) > MAX_ABS_VALUE, f"value must be within +-{MAX_ABS_VALUE:g}")
        bad(
            self._out_of_order(sid, ts),
            "timestamp must be strictly greater than the previous point's",
        )
        oldest = now - self.limits.retention_30s
        cutoff = format_rfc3339(math.ceil(oldest))
        bad(ts < oldest, f"timestamp is before {cutoff}: older than the 30-second retention")
        bad(ts > now + self.limits.future_slack, "timestamp is more than 5 minutes in the future")

    @staticmethod
    def _out_of_order(sid: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Points not after the series' previous point with a usable timestamp."""
        known = np.isfinite(ts)
        if not len(ts):
            return known
        last = np.maximum.accumulate(np.where(known, np.arange(len(ts)), -1))
        prev = np.concatenate([[-1], last[:-1]])  # the last known timestamp before each point
        ok_prev = prev >= 0
        prev_ts = ts[np.maximum(prev, 0)]
        same = ok_prev & (sid[np.maximum(prev, 0)] == sid)
        return known & same & ~(ts > prev_ts)

    def _check_carries(
        self,
        carries: list[tuple[float, float] | None],
        ts: np.ndarray,
        counts: np.ndarray,
        now: float,
        problems: Problems,
    ) -> tuple[np.ndarray, np.ndarray]:
        first = np.concatenate([[0], np.cumsum(counts)])[:-1]
        oldest = now - self.limits.retention_30s
        carry_ts = np.full(len(carries), np.nan)
        carry_val = np.full(len(carries), np.nan)
        for i, c in enumerate(carries):
            path = f"series.{i}.carry"
            if c is None:
                continue
            if not (np.isfinite(c[0]) and np.isfinite(c[1])):
                problems.add(path, "carry must be finite numbers")
            elif abs(c[1]) > MAX_ABS_VALUE:
                problems.add(path, f"value must be within +-{MAX_ABS_VALUE:g}")
            elif c[0] < oldest - self.limits.hold - engine.WINDOW:
                # Its hold ends before any window the retention keeps: it would only write
                # windows in the distant past (year 1, or before InfluxDB's 1677): dropped.
                continue
            elif counts[i] and np.isfinite(ts[first[i]]) and not c[0] < ts[first[i]]:
                problems.add(path, "carry must be strictly before the first point")
            else:
                carry_ts[i], carry_val[i] = c
        return carry_ts, carry_val
