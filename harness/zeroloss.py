"""What a store holds after a load run, for the zero-loss check: every acknowledged sample once.

The figures are read straight from the store (SQLite file, influxd's own /query), never through
the API under test.
"""

from __future__ import annotations

import json
import math
import sqlite3
import urllib.parse
import urllib.request
from pathlib import Path

from harness.fleet import WINDOW


def stored_sqlite(db_path: str | Path, host_like: str = "%") -> dict:
    """Sum, number and largest of the 30-s windows' counts, and the integrity check's answer."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        total, rows, top = con.execute(
            "SELECT COALESCE(SUM(w.count), 0), COUNT(*), COALESCE(MAX(w.count), 0) FROM w30 w "
            "JOIN series s ON s.id = w.series_id WHERE s.host LIKE ?",
            (host_like,),
        ).fetchone()
        check = con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()
    return {"sum": total, "windows": rows, "max_count": top, "integrity": check}


def influx_query(http_url: str, db: str, q: str) -> list[dict]:
    """InfluxQL through influxd's own HTTP /query (not through the API)."""
    url = f"{http_url}/query?" + urllib.parse.urlencode({"db": db, "q": q})
    with urllib.request.urlopen(url, timeout=60) as r:
        data = json.loads(r.read())
    out = []
    for res in data.get("results", []):
        if "error" in res:
            raise RuntimeError(res["error"])
        out.extend(res.get("series", []))
    return out


def stored_influx(storage_url: str) -> dict:
    """The same figures as stored_sqlite from the 30-s retention policy of an influxdb:// URL."""
    p = urllib.parse.urlsplit(storage_url)
    http_url, db = f"http://{p.hostname}:{p.port}", p.path.strip("/")
    total = top = rows = 0
    for s in influx_query(http_url, db, 'SELECT sum("count") FROM "rp_30s"./.*/'):
        total += int(s["values"][0][1] or 0)
    for s in influx_query(http_url, db, 'SELECT max("count") FROM "rp_30s"./.*/'):
        top = max(top, int(s["values"][0][1] or 0))
    for s in influx_query(http_url, db, 'SELECT count("count") FROM "rp_30s"./.*/'):
        rows += int(s["values"][0][1] or 0)
    return {"sum": total, "windows": rows, "max_count": top, "integrity": "n/a"}


def per_window(samples: set[tuple[str, str, str, float]]) -> dict[tuple[str, str, str, int], int]:
    """Expected ``count`` of each (host, metric, tags, window label) from distinct samples."""
    out: dict[tuple[str, str, str, int], int] = {}
    for host, metric, tags, ts in samples:
        k = (host, metric, tags, int(math.floor(ts / WINDOW) * WINDOW + WINDOW))
        out[k] = out.get(k, 0) + 1
    return out


def stored_windows_sqlite(db_path: str | Path, host: str) -> dict[tuple[str, str, str, int], int]:
    """Stored ``count`` of each window of one host with at least one sample of its own."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        rows = con.execute(
            "SELECT s.host, s.metric, s.tags, w.t, w.count FROM w30 w "
            "JOIN series s ON s.id = w.series_id WHERE s.host = ? AND w.count > 0",
            (host,),
        ).fetchall()
    finally:
        con.close()
    return {(h, m, t, int(lbl)): int(c) for h, m, t, lbl, c in rows}
