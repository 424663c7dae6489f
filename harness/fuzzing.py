"""What the in-process fuzz (tests/test_fuzz.py) and the long one (bench/fuzz.py) share.

The checks every answer must pass, the samples-body anchoring in time, and the strategy that
swaps the query's start/end strings for real times.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import orjson
import schemathesis
from hypothesis import strategies as st
from schemathesis import checks as st_checks

# Checks that need semantics the schema cannot state (a schema-valid timestamp may be
# older than the retention), so a 400 there is right; everything else stays on.
EXCLUDED = [st_checks.positive_data_acceptance]


# The InfluxDB line protocol endpoints add InfluxDB's own keys to ours (CONTRACT.md 8.1).
INFLUX_PATHS = ("/write", "/api/v2/write", "/query", "/ping")
INFLUX_KEYS = {"error", "details", "code", "message"}


def error_shape(ctx: Any, response: Any, case: Any) -> None:
    """Every 4xx (documented or not: 404, 405, 413, 415...) is {"error": str, "details": {}}
    (plus InfluxDB's "code" and "message" on its endpoints)."""
    if 400 <= response.status_code < 500:
        body = orjson.loads(response.content)
        shapes = [{"error", "details"}]
        if case.path in INFLUX_PATHS:  # a 405 from routing comes before the views' handler
            shapes.append(INFLUX_KEYS)
        assert isinstance(body, dict) and set(body) in shapes, body
        assert isinstance(body["error"], str) and body["error"], body
        assert isinstance(body["details"], dict), body


def anchor(body: Any, now: float) -> Any:
    """A samples body with its numeric timestamps moved into the accepted range, sorted."""
    if not (isinstance(body, dict) and isinstance(body.get("series"), list)):
        return None
    out = {**body, "series": []}
    for s in body["series"]:
        if not (isinstance(s, dict) and isinstance(s.get("points"), list)):
            return None
        pts: dict[float, Any] = {}
        for p in s["points"]:
            if isinstance(p, list) and len(p) == 2 and type(p[0]) in (int, float):
                pts.setdefault(now - 3000 + math.fmod(abs(p[0]), 2900.0), p[1])
        s = {k: v for k, v in s.items() if k != "carry"}
        s["points"] = [[t, v] for t, v in sorted(pts.items())]
        out["series"].append(s)
    return out


def all_numbers_finite(obj: Any) -> bool:
    """No null/NaN where the contract promises numbers (mean, energy_wh, total_wh...)."""
    if isinstance(obj, dict):
        return all(all_numbers_finite(v) for k, v in obj.items() if k not in ("unit", "tags"))
    if isinstance(obj, list):
        return all(all_numbers_finite(v) for v in obj)
    if isinstance(obj, float):
        return math.isfinite(obj)
    return obj is not None


# start/end are plain strings in the OpenAPI, and random strings are almost never times: mix in
# epoch numbers of every size (nan, inf, 1e300, before year 1, after 9999) and RFC 3339 texts.
TIME_TEXT = st.one_of(
    st.floats().map(repr),
    st.integers(min_value=-(10**13), max_value=10**13).map(str),
    st.builds(
        lambda d, off: d.isoformat() + off,
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
        st.sampled_from(["Z", "+00:00", "+14:00", "-12:00", "+00:01", ""]),
    ),
)


# A start and an end close together anywhere in time, so the range checks pass and the answer
# has to be written: out in year 0 or year 30000 it used to be a 500.
NEAR_PAIR = st.builds(
    lambda a, d: (repr(a), repr(a + d)),
    st.one_of(st.floats(-1e14, 1e14), st.integers(-(10**13), 10**13)),
    st.integers(1, 7200),
)


def times_in_query(context: Any, query: Any) -> st.SearchStrategy:
    """Swap string start/end for real times (strings only: negative cases stay negative)."""
    if not (
        isinstance(query, dict)
        and isinstance(query.get("start"), str)
        and isinstance(query.get("end"), str)
    ):
        return st.just(query)
    # Hypothesis leans to one_of's first branch: the generated strings come last.
    pairs = st.one_of(
        NEAR_PAIR, st.tuples(TIME_TEXT, TIME_TEXT), st.just((query["start"], query["end"]))
    )
    return pairs.map(lambda p: {**query, "start": p[0], "end": p[1]})


@schemathesis.serializer("application/x-protobuf")
def protobuf_bytes(ctx: Any, value: Any) -> bytes:
    """Remote write and OTLP bodies are binary (``format: binary``): sent as they come."""
    if isinstance(value, bytes):
        return value
    return str(value).encode()
