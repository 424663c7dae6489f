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
    """UTC with a Z, the fraction as sent (rounded to the microsecond, never truncated)."""
    whole = math.floor(t)
    micros = round((t - whole) * 1_000_000)
    if micros == 1_000_000:
        whole, micros = whole + 1, 0
    # isoformat, not strftime: glibc's %Y does not pad years before 1000 to four digits.
    text = datetime.fromtimestamp(whole, UTC).replace(tzinfo=None).isoformat(timespec="seconds")
    if micros:
        text += f".{micros:06d}".rstrip("0")
    return text + "Z"
