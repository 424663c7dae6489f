"""Times on the wire: RFC 3339 in and out, epoch seconds inside."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def parse_rfc3339(text: str) -> float | None:
    """Epoch seconds of an RFC 3339 time with an offset; None when it is not one."""
    if not RFC3339.fullmatch(text):
        return None
    try:
        dt = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    return dt.timestamp() if dt.tzinfo is not None else None


def format_rfc3339(t: float) -> str:
    """UTC with a Z; milliseconds only when the time has a fraction."""
    dt = datetime.fromtimestamp(t, UTC)
    # isoformat, not strftime: glibc's %Y does not pad years before 1000 to four digits.
    spec = "seconds" if t == math.floor(t) else "milliseconds"
    return dt.replace(tzinfo=None).isoformat(timespec=spec) + "Z"
