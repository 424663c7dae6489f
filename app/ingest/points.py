"""``[timestamp, value]`` pairs from JSON: exact types (no booleans, no numeric strings),
timestamps as epoch seconds or RFC 3339, checked before anything is built from them."""

from __future__ import annotations

import numpy as np

from app.core.times import parse_rfc3339
from app.ingest.problems import Problems

NAN = float("nan")


def split_points(points: object, path: str, problems: Problems) -> tuple[list, list]:
    """Timestamps and values of one series, with exact type checks.

    A point refused here is noted and stands as NaN in its column (its ``reported`` flag set, see
    ``reported``), so the vectorised checks still run over the rest and name their faults too.
    """
    if not isinstance(points, list) or not points:
        problems.add(path, "must be a non-empty list of [timestamp, value] pairs")
        return [], []
    if all(type(p) is list and len(p) == 2 for p in points):
        ts = [p[0] for p in points]
        vals = [p[1] for p in points]
        if {type(v) for v in vals} <= {int, float} and {type(t) for t in ts} <= {int, float}:
            return ts, vals  # the fast path: every point is a pair of JSON numbers
    ts, vals = [], []
    for k, p in enumerate(points):
        t, v = _point(p, f"{path}.{k}", problems)
        ts.append(t)
        vals.append(v)
    return ts, vals


def _point(p: object, path: str, problems: Problems) -> tuple[float, float]:
    """One point of the slow path: its timestamp and value, NaN where refused (and noted)."""
    if not (type(p) is list and len(p) == 2):
        problems.add(path, "must be a [timestamp, value] pair")
        return NAN, NAN
    t, v = p
    if type(v) in (int, float):
        value = float(v)
    else:
        problems.add(path, f"value must be a number, not {json_type(v)}")
        value = NAN
    if type(t) is str:
        parsed = parse_rfc3339(t)
        if parsed is None:
            problems.add(path, "timestamp string must be RFC 3339 with an offset")
        return NAN if parsed is None else parsed, value
    if type(t) not in (int, float):
        problems.add(path, f"timestamp must be a number or string, not {json_type(t)}")
        return NAN, value
    return float(t), value


def carry_pair(c: object, path: str, problems: Problems) -> tuple[float, float] | None:
    """A series' carry as (timestamp, value), None when absent or refused."""
    if c is None:
        return None
    if not (type(c) is list and len(c) == 2):
        problems.add(path, "must be a [timestamp, value] pair")
        return None
    t, v = c
    if type(v) not in (int, float):
        problems.add(path, f"value must be a number, not {json_type(v)}")
        return None
    if type(t) is str:
        parsed = parse_rfc3339(t)
        if parsed is None:
            problems.add(path, "timestamp string must be RFC 3339 with an offset")
            return None
        return parsed, float(v)
    if type(t) not in (int, float):
        problems.add(path, f"timestamp must be a number or string, not {json_type(t)}")
        return None
    return float(t), float(v)


def timestamps(parts: list[list]) -> np.ndarray:
    """Every series' timestamps, concatenated, as float64 epoch seconds."""
    return np.array([t for part in parts for t in part], dtype=np.float64)


def json_type(v: object) -> str:
    """A JSON value's type, as a user would name it."""
    return {
        bool: "a boolean",
        str: "a string",
        type(None): "null",
        list: "a list",
        dict: "an object",
    }.get(type(v), type(v).__name__)
