"""The InfluxDB layout (fixed: the Grafana dashboards use it) and its URL.

Database from the URL; retention policies ``rp_30s`` (DEFAULT), ``rp_30m`` and ``rp_raw`` (only
when raw samples are kept); measurement = metric, tags = host + the series' tags; fields
mean/min/max/last/count/covered/integral[/energy_wh], unit, and the merge state
prev_ts/prev_val/segs. Timestamps are window STARTS, so the continuous query's
``GROUP BY time(30m)`` groups the right 30-second windows; reads add the window length.
"""

from __future__ import annotations

import math
from urllib.parse import parse_qs, unquote, urlsplit

RP_30S, RP_30M, RP_RAW = "rp_30s", "rp_30m", "rp_raw"
POINT_FIELDS = ("mean", "min", "max", "last", "count", "covered", "integral")


def parse_url(url: str) -> tuple[str, str, dict[str, str]]:
    """``influxdb://HOST:PORT/DB`` -> (http base URL, database, query options)."""
    parts = urlsplit(url)
    opts = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    http = "https" if opts.get("ssl", "").lower() in ("1", "true", "yes") else "http"
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    base = f"{http}://{host}:{parts.port or 8086}"
    db = unquote(parts.path.strip("/")) or opts.get("db", "") or "fleetpulse"
    return base, db, opts


def to_ns(t: float) -> int:
    """Epoch seconds (maybe fractional) -> integer nanoseconds, exact for whole seconds."""
    whole = math.floor(t)
    return whole * 1_000_000_000 + round((t - whole) * 1e9)


def tag_key(tags: dict[str, str]) -> tuple:
    """A series' tags as returned by GROUP BY * (empty = absent), without host, sorted."""
    return tuple(sorted((k, v) for k, v in tags.items() if v != "" and k != "host"))
