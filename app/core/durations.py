"""Durations as people and InfluxDB write them (``90s``, ``2h``, ``7d``, ``168h``)."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(text: str) -> float:
    """Seconds from ``2h``/``7d``/``400d`` style text, so retentions read like InfluxDB's."""
    m = _DURATION.match(str(text))
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 2h, 7d, 400d)")
    return float(m.group(1)) * _UNIT[m.group(2)]


def format_duration(seconds: float) -> str:
    """InfluxDB-style duration text (``168h``) for retention policies."""
    s = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s % size == 0 and s >= size:
            return f"{s // size * (24 if unit == 'd' else 1)}{'h' if unit == 'd' else unit}"
    return f"{s}s"
