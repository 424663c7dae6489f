"""One-time, idempotent setup of InfluxDB 1.x: the database, retention policies and the CQ.

Every worker runs it at start (creating what is missing, altering what differs, replacing the
CQ only if its text changed); InfluxDB 2.x is set up by ``v2`` instead.
"""

from __future__ import annotations

import logging

from app.core.durations import format_duration
from app.storage.influxdb.layout import RP_30M, RP_30S, RP_RAW
from app.storage.influxdb.protocol import InfluxHTTP, quote_ident
from app.storage.influxdb.rollup import CQ_NAME, cq_statement, same_cq

log = logging.getLogger(__name__)

MIN_DURATION = 3600.0  # influxd 1.x refuses retention policies shorter than one hour


def clamp_duration(kind: str, seconds: float) -> float:
    """Retention in seconds as influxd 1.x accepts it (0 or less: keep forever)."""
    if seconds <= 0:
        return 0.0
    if seconds < MIN_DURATION:
        log.warning("%s retention %ss is under InfluxDB's 1h minimum: using 1h", kind, int(seconds))
        return MIN_DURATION
    return float(seconds)


def _duration_text(seconds: float) -> str:
    return "INF" if seconds <= 0 else format_duration(seconds)


def _influx_duration_seconds(text: str) -> float:
    """``168h0m0s`` (SHOW RETENTION POLICIES) -> seconds; ``0s`` = infinite."""
    total, num = 0.0, ""
    for ch in text:
        if ch.isdigit() or ch == ".":
            num += ch
        else:
            total += float(num or 0) * {"h": 3600, "m": 60, "s": 1}.get(ch, 0)
            num = ""
    return total


def wanted_policies(keep_raw: bool) -> list[tuple[str, str, bool]]:
    """(retention policy, retention kind, is default) for the series this layout keeps."""
    wanted = [(RP_30S, "30s", True), (RP_30M, "30m", False)]
    if keep_raw:
        wanted.append((RP_RAW, "raw", False))
    return wanted


def ensure_1x(http: InfluxHTTP, db: str, retention: dict[str, float], keep_raw: bool) -> None:
    """Create, idempotently, the database, the retention policies and the CQ."""
    qdb = quote_ident(db)
    http.query([f"CREATE DATABASE {qdb}"], post=True)
    (res,) = http.query([f"SHOW RETENTION POLICIES ON {qdb}"])
    existing = {}
    for row in (res.get("series") or [{}])[0].get("values", []):
        existing[row[0]] = (_influx_duration_seconds(row[1]), bool(row[-1]))
    stmts = []
    for name, kind, default in wanted_policies(keep_raw):
        secs = retention.get(kind, 0.0)
        dur = _duration_text(secs)
        rp = f"{quote_ident(name)} ON {qdb} DURATION {dur} REPLICATION 1"
        if name not in existing:
            stmts.append(f"CREATE RETENTION POLICY {rp}" + (" DEFAULT" if default else ""))
        elif existing[name][0] != secs or (default and not existing[name][1]):
            log.info("retention policy %s: duration -> %s", name, dur)
            stmts.append(f"ALTER RETENTION POLICY {rp}" + (" DEFAULT" if default else ""))
    if stmts:
        http.query(stmts, post=True)
    _ensure_cq(http, db)


def _ensure_cq(http: InfluxHTTP, db: str) -> None:
    (res,) = http.query(["SHOW CONTINUOUS QUERIES"])
    want = cq_statement(db)
    current = None
    for series in res.get("series", []):
        if series.get("name") == db:
            for name, text in series.get("values", []):
                if name == CQ_NAME:
                    current = text
    if current is not None and same_cq(current, want):
        return
    if current is not None:  # its text changed (an upgrade): replace it
        log.info("continuous query %s: replacing it", CQ_NAME)
        drop = f"DROP CONTINUOUS QUERY {quote_ident(CQ_NAME)} ON {quote_ident(db)}"
        try:
            http.query([drop], post=True)
        except RuntimeError as e:  # another worker dropped it first
            if "not found" not in str(e):
                raise
    try:
        http.query([want], post=True)
    except RuntimeError as e:  # another worker created it at the same moment
        if "already exists" not in str(e):
            raise
