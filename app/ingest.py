"""From a request body to a validated ``Batch``: decode, check the envelope, check the points.

Everything is checked before anything is stored, and every bad field is named by its path.
"""

from __future__ import annotations

import re
import zlib
from datetime import datetime

import numpy as np
import orjson
from marshmallow import ValidationError

from app import engine
from app.schemas import HOST_RE, SamplesIn, flatten_errors
from app.settings import Settings
from app.storage.base import Batch, SeriesKey

MAX_DETAILS = 1000
# Finite values beyond this would overflow float64 in the integrals (value x seconds, summed over
# windows) and come back as null means; 1e300 x 1800 s x 10,000 windows still fits.
MAX_ABS_VALUE = 1e300
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z")


class Invalid(Exception):
    """A 400: ``details`` maps field paths to reasons."""

    def __init__(self, message: str, details: dict[str, list[str]]) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class TooLarge(Exception):
    """A 413: the body, once inflated, or its point count is over the documented limit."""


def decode_body(body: bytes, encoding: str | None, limit: int) -> object:
    """JSON from a (maybe gzipped) body; a gzip bomb is refused after ``limit`` bytes."""
    enc = (encoding or "identity").strip().lower()
    if enc == "gzip":
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = d.decompress(body, limit + 1)
            if len(body) > limit or d.unconsumed_tail:
                raise TooLarge(f"body inflates to more than {limit} bytes")
            body += d.flush()
        except zlib.error as e:
            raise Invalid("body is not valid gzip", {"_body": [str(e)]}) from e
        if not d.eof:
            raise Invalid("body is not valid gzip", {"_body": ["truncated gzip stream"]})
        if d.unused_data:
            # A second gzip member (or junk) after the first would otherwise be dropped silently.
            raise Invalid(
                "body is not valid gzip", {"_body": ["data after the end of the gzip stream"]}
            )
    elif enc != "identity":
        raise Invalid(
            "unsupported Content-Encoding",
            {"Content-Encoding": [f"{encoding!r}: use gzip or none"]},
        )
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise Invalid("body is not valid JSON", {"_body": [str(e)]}) from e


_SERIES_KEYS = frozenset({"metric", "tags", "unit", "carry", "points"})
_HOST = re.compile(HOST_RE)


def _header(s: dict) -> tuple | None:
    """What of a series object the schema judges, as a hashable key (None: not plain JSON)."""
    metric, tags, unit = s.get("metric"), s.get("tags", ()), s.get("unit")
    if type(metric) is not str or not (unit is None or type(unit) is str):
        return None
    if tags != ():
        if type(tags) is not dict:
            return None
        tags = tuple(tags.items())
        if not all(type(k) is str and type(v) is str for k, v in tags):
            return None
    return metric, tags, unit


class EnvelopeLoader:
    """``SamplesIn``, remembering the series headers (metric, tags, unit) it has accepted.

    An agent sends the same headers every 30 s, and marshmallow loading 40 nested objects field
    by field was most of a request's parse time. A request whose every header was accepted
    before, with nothing else the schema could refuse (unknown keys, null points, a bad host),
    skips the schema; anything else goes through it, errors and all.
    """

    def __init__(self, max_headers: int = 20_000) -> None:
        self.schema = SamplesIn()
        self.max_headers = max_headers
        self._headers: set[tuple] = set()

    def load(self, data: dict) -> dict:
        """The validated document; raises marshmallow's ValidationError."""
        doc = self._known(data)
        if doc is None:
            doc = self.schema.load(data)
            if len(self._headers) >= self.max_headers:
                self._headers.clear()  # bounded; they are learnt again
            self._headers.update(h for s in data["series"] if (h := _header(s)) is not None)
        return doc

    def _known(self, data: dict) -> dict | None:
        host, series = data.get("host"), data.get("series")
        if len(data) != 2 or type(host) is not str or not _HOST.match(host):
            return None
        if type(series) is not list or not series:
            return None
        out = []
        for s in series:
            if type(s) is not dict or s.get("points") is None or not s.keys() <= _SERIES_KEYS:
                return None
            if _header(s) not in self._headers:
                return None
            out.append(
                {
                    "metric": s["metric"],
                    "tags": s.get("tags", {}),
                    "unit": s.get("unit"),
                    "carry": s.get("carry"),
                    "points": s["points"],
                }
            )
        return {"host": host, "series": out}


_envelope = EnvelopeLoader()


def parse_samples(data: object, settings: Settings, now: float) -> Batch:
    """Validate a decoded samples request and aggregate it; raises Invalid or TooLarge."""
    if not isinstance(data, dict):
        raise Invalid("body must be a JSON object", {"_body": ["expected an object"]})
    try:
        doc = _envelope.load(data)
    except ValidationError as e:
        details = flatten_errors(e.messages)
        # Name the bad points too, not only the envelope's fields, in the same answer.
        raw_series = data.get("series")
        if isinstance(raw_series, list):
            for i, s in enumerate(raw_series):
                if isinstance(s, dict) and f"series.{i}.points" not in details:
                    _split_points(s.get("points"), f"series.{i}.points", details)
        raise Invalid(_summary(details), _cap(details)) from e

    errors: dict[str, list[str]] = {}
    series = doc["series"]
    total = sum(len(s["points"]) if isinstance(s["points"], list) else 0 for s in series)
    if total > settings.max_points:
        raise TooLarge(f"{total} points in one request; the limit is {settings.max_points}")

    keys: list[SeriesKey] = []
    seen: dict[SeriesKey, int] = {}
    ts_parts: list[list] = []
    val_parts: list[list] = []
    carries: list[tuple[float, float] | None] = []
    for i, s in enumerate(series):
        key = (s["metric"], tuple(sorted(s["tags"].items())))
        if key in seen:
            _add(errors, f"series.{i}", f"same metric and tags as series.{seen[key]}")
        seen[key] = i
        keys.append(key)
        ts_raw, vals = _split_points(s["points"], f"series.{i}.points", errors)
        ts_parts.append(ts_raw)
        val_parts.append(vals)
        carries.append(_carry(s["carry"], f"series.{i}.carry", errors))

    if errors:
        raise Invalid(_summary(errors), _cap(errors))

    counts = np.fromiter((len(p) for p in ts_parts), dtype=np.int64, count=len(ts_parts))
    ts = _timestamps(ts_parts, errors)
    val = np.fromiter(
        (v for part in val_parts for v in part), dtype=np.float64, count=int(counts.sum())
    )
    sid = np.repeat(np.arange(len(series), dtype=np.int64), counts)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    idx = np.arange(len(ts)) - offsets[sid]

    def bad(mask: np.ndarray, reason: str) -> None:
        for j in np.flatnonzero(mask)[:MAX_DETAILS].tolist():
            _add(errors, f"series.{sid[j]}.points.{idx[j]}", reason)

    bad(~np.isfinite(val), "value must be a finite number")
    too_big = np.isfinite(val) & (np.abs(val) > MAX_ABS_VALUE)
    bad(too_big, f"value must be within +-{MAX_ABS_VALUE:g}")
    bad(~np.isfinite(ts), "timestamp must be a finite number")
    same = sid[1:] == sid[:-1]
    order_bad = np.zeros(len(ts), dtype=bool)
    order_bad[1:] = same & ~(ts[1:] > ts[:-1])
    bad(order_bad, "timestamp must be strictly greater than the previous point's")
    oldest = now - settings.retention_30s
    bad(ts < oldest, f"timestamp is older than the 30-second retention ({oldest:.0f})")
    bad(ts > now + settings.future_slack, "timestamp is more than 5 minutes in the future")

    carry_ts = np.full(len(series), np.nan)
    carry_val = np.full(len(series), np.nan)
    for i, c in enumerate(carries):
        if c is None:
            continue
        if not (np.isfinite(c[0]) and np.isfinite(c[1])):
            _add(errors, f"series.{i}.carry", "carry must be finite numbers")
        elif abs(c[1]) > MAX_ABS_VALUE:
            _add(errors, f"series.{i}.carry", f"value must be within +-{MAX_ABS_VALUE:g}")
        elif c[0] < oldest - settings.hold - engine.WINDOW:
            # Its hold ends before any window the retention keeps: it would only write windows
            # in the distant past (year 1, or before InfluxDB's 1677), so it is dropped.
            continue
        elif counts[i] and not c[0] < ts[offsets[i]]:
            _add(errors, f"series.{i}.carry", "carry must be strictly before the first point")
        else:
            carry_ts[i], carry_val[i] = c
    if errors:
        raise Invalid(_summary(errors), _cap(errors))

    last = offsets[1:] - 1
    return Batch(
        host=doc["host"],
        keys=keys,
        units=[s["unit"] for s in series],
        summaries=engine.summarize(sid, ts, val, carry_ts, carry_val, settings.hold),
        latest_ts=ts[last],
        latest_val=val[last],
        raw_sid=sid,
        raw_ts=ts,
        raw_val=val,
    )


def _split_points(points: object, path: str, errors: dict) -> tuple[list, list]:
    """Timestamps and values of one series, with exact type checks (no bools, no strings)."""
    if not isinstance(points, list) or not points:
        _add(errors, path, "must be a non-empty list of [timestamp, value] pairs")
        return [], []
    if all(type(p) is list and len(p) == 2 for p in points):
        ts = [p[0] for p in points]
        vals = [p[1] for p in points]
        if {type(v) for v in vals} <= {int, float} and {type(t) for t in ts} <= {int, float}:
            return ts, vals  # the fast path: every point is a pair of JSON numbers
    for k, p in enumerate(points):
        if not (type(p) is list and len(p) == 2):
            _add(errors, f"{path}.{k}", "must be a [timestamp, value] pair")
            continue
        t, v = p
        if type(v) not in (int, float):
            _add(errors, f"{path}.{k}", f"value must be a number, not {_jtype(v)}")
        if type(t) is str:
            if _rfc3339(t) is None:
                _add(errors, f"{path}.{k}", "timestamp string must be RFC 3339 with an offset")
        elif type(t) not in (int, float):
            _add(errors, f"{path}.{k}", f"timestamp must be a number or string, not {_jtype(t)}")
    return [p[0] for p in points if type(p) is list and len(p) == 2], [
        p[1] for p in points if type(p) is list and len(p) == 2
    ]


def _carry(c: object, path: str, errors: dict) -> tuple[float, float] | None:
    if c is None:
        return None
    if not (type(c) is list and len(c) == 2):
        _add(errors, path, "must be a [timestamp, value] pair")
        return None
    t, v = c
    if type(v) not in (int, float):
        _add(errors, path, f"value must be a number, not {_jtype(v)}")
        return None
    if type(t) is str:
        parsed = _rfc3339(t)
        if parsed is None:
            _add(errors, path, "timestamp string must be RFC 3339 with an offset")
            return None
        return parsed, float(v)
    if type(t) not in (int, float):
        _add(errors, path, f"timestamp must be a number or string, not {_jtype(t)}")
        return None
    return float(t), float(v)


def _timestamps(parts: list[list], errors: dict) -> np.ndarray:
    flat = [t for part in parts for t in part]
    try:
        return np.array(flat, dtype=np.float64)
    except (ValueError, TypeError):
        return np.array(
            [_rfc3339(t) if type(t) is str else float(t) for t in flat], dtype=np.float64
        )


def _rfc3339(text: str) -> float | None:
    if not RFC3339.match(text):
        return None
    try:
        dt = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    return dt.timestamp() if dt.tzinfo is not None else None


def _jtype(v: object) -> str:
    return {
        bool: "a boolean",
        str: "a string",
        type(None): "null",
        list: "a list",
        dict: "an object",
    }.get(type(v), type(v).__name__)


def _add(errors: dict[str, list[str]], path: str, reason: str) -> None:
    if len(errors) < MAX_DETAILS or path in errors:
        errors.setdefault(path, []).append(reason)
    else:
        errors.setdefault("_truncated", ["more invalid fields were not listed"])


def _cap(details: dict[str, list[str]]) -> dict[str, list[str]]:
    return details if len(details) <= MAX_DETAILS + 1 else dict(list(details.items())[:MAX_DETAILS])


def _summary(details: dict[str, list[str]]) -> str:
    n = len([k for k in details if k != "_truncated"])
    first = next(iter(details))
    return f"invalid request: {n} bad field(s), first {first}: {details[first][0]}"
