"""Time ranges of the read endpoints: start, end and resolution, every edge case answered."""

from __future__ import annotations

import math
import re

from app.core import resolution
from app.core.times import parse_rfc3339
from app.web.errors import ApiError

MAX_WINDOWS = 10_000
AUTO_30S_MAX = 2880
EPOCH_RE = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$")
MIN_TIME = -62135596800.0  # 0001-01-01T00:00:00Z
MAX_TIME = 253402300799.0  # 9999-12-31T23:59:59Z


def parse_time(text: str, name: str) -> float:
    """Epoch seconds or RFC 3339 with an offset, else a 400 that names the parameter."""
    # Plain ASCII decimals only: float() would also take "1_000", " 7 ", "nan" or Arabic digits.
    parsed = float(text) if EPOCH_RE.fullmatch(text) else parse_rfc3339(text)
    if parsed is None or not math.isfinite(parsed):
        hint = "use epoch seconds or RFC 3339 with an offset (e.g. 2026-11-23T10:00:00Z)"
        if " " in text and parse_rfc3339(text.replace(" ", "+")) is not None:
            hint = "a '+' in a query string reads as a space: send it as %2B (or use Z)"
        raise ApiError(400, f"{name} is not a time", {name: [hint]})
    if not MIN_TIME <= parsed <= MAX_TIME:
        # Answers carry times as RFC 3339, which has no year 0 nor year 10000.
        hint = "must lie between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z"
        if EPOCH_RE.fullmatch(text) and MIN_TIME <= parsed / 1000 <= MAX_TIME:
            hint += f"; this looks like milliseconds: send seconds ({parsed / 1000:.3f})"
        raise ApiError(400, f"{name} is out of range", {name: [hint]})
    return parsed


def parse_range(args: dict) -> tuple[float, float, str]:
    """start/end/resolution with every edge case of the contract answered."""
    start = parse_time(args["start"], "start")
    end = parse_time(args["end"], "end")
    if start >= end:
        raise ApiError(400, "start must be before end", {"start": ["must be < end"]})
    res = args.get("resolution") or "auto"
    if res == "auto":
        res = "30s" if windows_in(start, end, 30) <= AUTO_30S_MAX else "30m"
    step = resolution.seconds(res)
    if step is None:  # the schema refuses these already; a direct caller gets the same 400
        raise ApiError(400, "unknown resolution", {"resolution": [f"must be {resolution.FORMS}"]})
    n = windows_in(start, end, step)
    if n > MAX_WINDOWS:
        hint = "narrow the range or use a coarser resolution"
        raise ApiError(
            400,
            f"the range holds {n} windows of {res}; at most {MAX_WINDOWS} may be asked for",
            {"end": [f"{hint} (at most {MAX_WINDOWS} windows)"]},
        )
    return start, end, res


def windows_in(start: float, end: float, step: int) -> int:
    """Labels (multiples of step) in (start, end]."""
    return int(math.floor(end / step) - math.floor(start / step))
