"""``[timestamp, value]`` pairs from JSON: exact types (no booleans, no numeric strings),
timestamps as epoch seconds or RFC 3339, checked before anything is built from them."""

from __future__ import annotations

import numpy as np

from app.core.times import parse_rfc3339
from app.ingest.problems import Problems


def split_points(points: object, path: str, problems: Problems) -> tuple[list, list]:
    """Timestamps and values of one series, with exact type checks."""
    if not isinstance(points, list) or not points:
        problems.add(path, "must be a non-empty list of [timestamp, value] pairs")
        return [], []
    if all(type(p) is list and len(p) == 2 for p in points):
        ts = [p[0] for p in points]
        vals = [p[1] for p in points]
        if {type(v) for v in vals} <= {int, float} and {type(t) for t in ts} <= {int, float}:
            return ts, vals  # the fast path: every point is a pair of JSON numbers
    for k, p in enumerate(points):
        if not (type(p) is list and len(p) == 2):
            problems.add(f"{path}.{k}", "must be a [timestamp, value] pair")
            continue
        t, v = p
        if type(v) not in (int, float):
            problems.add(f"{path}.{k}", f"value must be a number, not {json_type(v)}")
        if type(t) is str:
            if parse_rfc3339(t) is None:
                problems.add(f"{path}.{k}", "timestamp string must be RFC 3339 with an offset")
        elif type(t) not in (int, float):
            problems.add(f"{path}.{k}", f"timestamp must be a number or string, not {json_type(t)}")
    pairs = [p for p in points if type(p) is list and len(p) == 2]
    return [p[0] for p in pairs], [p[1] for p in pairs]


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
    flat = [t for part in parts for t in part]
    try:
        return np.array(flat, dtype=np.float64)
    except (ValueError, TypeError):
        return np.array(
            [parse_rfc3339(t) if type(t) is str else float(t) for t in flat], dtype=np.float64
        )


def json_type(v: object) -> str:
    """A JSON value's type, as a user would name it."""
    return {
        bool: "a boolean",
        str: "a string",
        type(None): "null",
        list: "a list",
        dict: "an object",
    }.get(type(v), type(v).__name__)
