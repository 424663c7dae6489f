"""The 30-minute rollup inside InfluxDB 1.x: one InfluxQL statement, run by the continuous
query every 15 minutes and by ``run_jobs`` over any range on demand."""

from __future__ import annotations

from app.storage.influxdb.layout import RP_30M, RP_30S
from app.storage.influxdb.protocol import quote_ident

CQ_NAME = "cq_30m"


def cq_select(db: str, time_range: str = "") -> str:
    """The 30-minute rollup; the CQ and ``run_jobs`` run this same statement."""
    where = f" WHERE {time_range}" if time_range else ""
    return (
        'SELECT sum("integral") / sum("covered") AS "mean", sum("integral") AS "integral", '
        'sum("covered") AS "covered", min("min") AS "min", max("max") AS "max", '
        'last("last") AS "last", sum("count") AS "count", sum("energy_wh") AS "energy_wh" '
        f"INTO {quote_ident(db)}.{quote_ident(RP_30M)}.:MEASUREMENT "
        f"FROM {quote_ident(db)}.{quote_ident(RP_30S)}./.*/{where} GROUP BY time(30m), *"
    )


def cq_statement(db: str) -> str:
    """CREATE CONTINUOUS QUERY: every 15 minutes, re-covering the last hour (late points)."""
    return (
        f"CREATE CONTINUOUS QUERY {quote_ident(CQ_NAME)} ON {quote_ident(db)} "
        f"RESAMPLE EVERY 15m FOR 1h BEGIN {cq_select(db)} END"
    )


def same_cq(current: str, want: str) -> bool:
    """SHOW CONTINUOUS QUERIES re-renders the text; compare without quotes and spacing."""

    def norm(t: str) -> str:
        return "".join(t.replace('"', "").lower().split())

    return norm(current) == norm(want)
