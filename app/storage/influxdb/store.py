"""The InfluxDB store: the write primitives and range reads over the 1.x HTTP protocol
(/write, InfluxQL /query), which 1.x, 2.x and 3.x all serve. See ``layout`` for the layout.

The series registry, the host list and each series' newest sample live in the metadata database
(``Registry``: an SQLite file, or PostgreSQL for several nodes), exactly as in the SQLite store,
so those reads are identical and fast.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import math
from collections import defaultdict
from collections.abc import Iterator

import numpy as np

from app.core import codec, engine
from app.core.errors import StorageUnavailable
from app.core.records import Batch, Query, SeriesPoints, Windows
from app.storage.base import Rows, Store, Stored, series_bounds, windows_from_rows
from app.storage.influxdb.group import GroupWriter
from app.storage.influxdb.layout import (
    POINT_FIELDS,
    RP_30M,
    RP_30S,
    RP_RAW,
    parse_url,
    tag_key,
    to_ns,
)
from app.storage.influxdb.protocol import (
    InfluxHTTP,
    escape_string_field,
    fmt_float,
    quote_ident,
    quote_literal,
    series_key,
    stored_tag_value,
)
from app.storage.influxdb.rollup import cq_select
from app.storage.influxdb.setup import clamp_duration, ensure_1x
from app.storage.metadb import Conn, open_metadata
from app.storage.options import StoreOptions
from app.storage.registry import REGISTRY_SCHEMA, Found, Registry
from app.storage.sqldb import rows_in

log = logging.getLogger(__name__)

JOB_TIMEOUT = 120.0  # seconds for one rollup statement of the job (up to 6 h of the fleet)

# Per series: the newest window label ever *attempted* (bumped before each write). A batch
# whose windows all lie after it cannot have stored merge state, so it skips the read.
HWM_TABLE = (
    "CREATE TABLE IF NOT EXISTS influx_hwm (series_id INTEGER PRIMARY KEY, label INTEGER NOT NULL);"
)


class InfluxStore(Store):
    """The 1.x protocol store; ``v2.Influx2Store`` reuses it with another setup."""

    def __init__(self, url: str, options: StoreOptions) -> None:
        base, self.db, self.options = parse_url(url)
        self.hold = options.hold
        self.timeout = options.timeout
        self.retention = {k: clamp_duration(k, v) for k, v in options.retention.items()}
        self.keep_raw = options.retention.get("raw", 0) > 0
        self.late_after = options.late_after
        self.group = GroupWriter(self._write_30s)  # concurrent requests share one /write
        c = options.credentials
        self.http = InfluxHTTP(base, options.timeout, c.token, c.username, c.password)
        self.meta = open_metadata(options.metadata_url, REGISTRY_SCHEMA + HWM_TABLE, self.timeout)
        self.registry = Registry(self.meta)
        self.locks = self.meta.host_locks()
        self._ready = False
        try:
            self.ensure_schema()
        except StorageUnavailable as e:  # start anyway: /readyz says 503, setup retries later
            log.warning("influxdb not reachable at start, will retry: %s", e)

    def ensure_schema(self) -> None:
        """The database, retention policies and CQ, created or brought in step."""
        ensure_1x(self.http, self.db, self.retention, self.keep_raw)
        self._ready = True

    def _check_ready(self) -> None:
        if not self._ready:
            self.ensure_schema()

    # ---- write primitives ------------------------------------------------------------------

    @contextlib.contextmanager
    def write_section(self, host: str) -> Iterator[object]:
        """One deadline for every call of the write, and the host's lock across workers (and
        nodes, on PostgreSQL); yields the lock, checked before windows are written."""
        with self.http.budget():
            self._check_ready()
            lock = self.locks.acquire(host, self.http.remaining())
            try:
                yield lock
            finally:
                self.locks.release(lock)

    def registry_tx(self, tx: object) -> contextlib.AbstractContextManager[Conn]:
        return self.meta.section_tx(tx)

    def read_states(self, tx: object, batch: Batch, ids: list[int], s: engine.Summaries) -> Stored:
        bounds = series_bounds(s, len(batch.keys))
        with self.meta.section_tx(tx) as con:
            need = self._bump_hwm(con, ids, s, bounds)
        return self._query_states(batch, s, bounds, need) if need else {}

    def _bump_hwm(
        self, con: Conn, ids: list[int], s: engine.Summaries, bounds: np.ndarray
    ) -> list[int]:
        """Raise each series' attempted-label mark; return the keys that may have stored state."""
        sql = "SELECT series_id, label FROM influx_hwm WHERE series_id IN ({marks})"
        old: dict[int, int] = dict(rows_in(lambda q, a: con.execute(q, a).fetchall(), sql, ids))
        need, new = [], {}
        for k, sid in enumerate(ids):
            a, b = bounds[k], bounds[k + 1]
            if a == b:
                continue
            lo, hi = int(s.label[a]), int(s.label[b - 1])
            prev = old.get(sid)
            if prev is not None and lo <= prev:
                need.append(k)
            if prev is None or hi > prev:
                new[sid] = max(hi, new.get(sid, hi))
        self.meta.values(
            con,
            "INSERT INTO influx_hwm (series_id, label)",
            "ON CONFLICT(series_id) DO UPDATE SET label=CASE WHEN excluded.label > "
            "influx_hwm.label THEN excluded.label ELSE influx_hwm.label END",
            list(new.items()),
            ("bigint", "bigint"),
        )
        return need

    def _query_states(
        self, batch: Batch, s: engine.Summaries, bounds: np.ndarray, need: list[int]
    ) -> Stored:
        """One /query, one statement per metric (GROUP BY * and exact tag matching here, so no
        tag value goes into InfluxQL)."""
        by_metric: dict[str, dict[tuple, int]] = defaultdict(dict)
        span: dict[str, list[int]] = {}
        for k in need:
            metric, tags = batch.keys[k]
            by_metric[metric][tuple((t, stored_tag_value(v)) for t, v in tags)] = k
            lo, hi = int(s.label[bounds[k]]), int(s.label[bounds[k + 1] - 1])
            cur = span.setdefault(metric, [lo, hi])
            cur[0], cur[1] = min(cur[0], lo), max(cur[1], hi)
        metrics = list(by_metric)
        host = quote_literal(batch.host)
        stmts = [
            f'SELECT "prev_ts"::field, "prev_val"::field, "segs"::field '
            f'FROM {quote_ident(RP_30S)}.{quote_ident(m)} WHERE "host"::tag = {host} '
            f"AND time >= {span[m][0] - engine.WINDOW}s AND time <= {span[m][1] - engine.WINDOW}s "
            f"GROUP BY *"
            for m in metrics
        ]
        stored: Stored = {}
        for metric, res in zip(metrics, self.http.query(stmts, db=self.db), strict=True):
            for series in res.get("series", []):
                k = by_metric[metric].get(tag_key(series.get("tags") or {}))
                if k is None:
                    continue
                for t, pts, pv, segs in series["values"]:
                    blob = base64.b64decode(segs) if segs else b""
                    stored[(k, int(t) + engine.WINDOW)] = codec.unpack_state(pts, pv, blob)
        return stored

    def write_windows(self, tx: object, batch: Batch, ids: list[int], rows: Rows) -> None:
        body = self._lines(batch, rows)
        self.locks.check(tx)  # a lock lost with its session (PostgreSQL restarted) stops here
        if body:  # stored before the host's lock is released: the shared write has answered
            self.group.write(body, self.http.remaining())

    def _write_30s(self, body: bytes) -> None:
        self.http.write(body, self.db, RP_30S, "s")

    def _lines(self, batch: Batch, rows: Rows) -> bytes:
        """One line per window with covered > 0, in the fixed field layout. Floats are written
        as ``repr`` of Python floats (``fmt_float``'s text, inlined: this loop is per window)."""
        prefix = []
        for (metric, tags), unit in zip(batch.keys, batch.units, strict=True):
            extra = "" if unit is None else f",unit={escape_string_field(unit)}"
            prefix.append((series_key(metric, batch.host, tags) + " ", extra, unit == "W"))
        w, st, keep = rows.windows, rows.states, rows.keep
        fields = (w.mean, w.min, w.max, w.last, w.count, w.covered, w.integral, w.time)
        cols = [c[keep].tolist() for c in (*fields, rows.merged.sid)]
        out = []
        for i, mean, vmin, vmax, last, count, covered, integral, label, sid in zip(
            keep.tolist(), *cols, strict=True
        ):
            key, unit_field, watts = prefix[sid]
            line = (
                f"{key}mean={mean!r},min={vmin!r},max={vmax!r},last={last!r},count={count}i,"
                f"covered={covered!r},integral={integral!r}"
            )
            if watts:
                line += f",energy_wh={integral / 3600.0!r}"
            if not math.isnan(st.prev_ts[i]):
                line += f",prev_ts={fmt_float(st.prev_ts[i])},prev_val={fmt_float(st.prev_val[i])}"
            segs = base64.b64encode(st.segs[i]).decode()
            out.append(f'{line}{unit_field},segs="{segs}" {label - engine.WINDOW}\n')
        return "".join(out).encode()

    def write_raw(self, tx: object, batch: Batch, ids: list[int]) -> None:
        keys = [series_key(m, batch.host, tags) for m, tags in batch.keys]
        body = "".join(
            f"{keys[k]} value={fmt_float(v)} {to_ns(t)}\n"
            for k, t, v in zip(
                batch.sid.tolist(), batch.ts.tolist(), batch.val.tolist(), strict=True
            )
        ).encode()
        self.http.write(body, self.db, RP_RAW, "ns")

    # ---- reads and jobs --------------------------------------------------------------------

    def query(self, q: Query) -> list[SeriesPoints]:
        with self.http.budget():  # one deadline for every call of the read
            return super().query(q)

    def read_series(
        self, host: str, found: list[Found], start: float, end: float, res: str
    ) -> list[Windows]:
        self._check_ready()
        rp, width = (RP_30S, engine.WINDOW) if res == "30s" else (RP_30M, engine.WINDOW_30M)
        metrics = sorted({m for _, m, _, _ in found})
        lo, hi = to_ns(start - width), to_ns(end - width)
        sel = ", ".join(f"{quote_ident(f)}::field" for f in POINT_FIELDS)
        where = f'WHERE "host"::tag = {quote_literal(host)} AND time > {lo} AND time <= {hi}'
        stmts = [
            f"SELECT {sel} FROM {quote_ident(rp)}.{quote_ident(m)} {where}"
            f"{tags_filter([t for _, m2, t, _ in found if m2 == m])} GROUP BY *"
            for m in metrics
        ]
        got: dict[tuple[str, tuple], list] = {}
        for metric, res_ in zip(metrics, self.http.query(stmts, db=self.db), strict=True):
            for series in res_.get("series", []):
                got[(metric, tag_key(series.get("tags") or {}))] = series["values"]
        out = []
        for _, metric, tags, _ in found:
            key = tuple(sorted((k, stored_tag_value(v)) for k, v in tags.items()))
            rows = [r for r in got.get((metric, key), []) if r[6] is not None and r[6] > 0]
            out.append(windows_from_rows(rows, width))
        return out

    def ping(self) -> None:
        with self.http.budget():
            self.http.ping()
            self._check_ready()

    def rollup(self, after: int, upto: int, host: str | None) -> int:
        """The CQ's statement over 30-second windows starting in [after, upto) (stamps are
        window starts), for one host or all: what the CQ never sees again (late points, a
        catch-up after downtime; CQs never backfill). Its own, longer deadline."""
        where = f"time >= {after}s AND time < {upto}s"
        if host is not None:
            where += f' AND "host" = {quote_literal(host)}'
        with self.http.budget(JOB_TIMEOUT):
            self._check_ready()
            (res,) = self.http.query([cq_select(self.db, where)], db=self.db, post=True)
        return sum(int(row[1] or 0) for s in res.get("series", []) for row in s.get("values", []))

    def expire(self, now: float) -> int:
        return 0  # the retention policies expire the data inside influxd

    def close(self) -> None:
        self.meta.close()
        self.locks.close()


def tags_filter(tag_sets: list[dict[str, str]], most: int = 8) -> str:
    """`` AND (...)`` narrowing a read to a few series' tags, so a one-series read of a metric
    with many tag sets does not fetch them all; the caller still matches series exactly."""
    if not tag_sets or len(tag_sets) > most or any(not t for t in tag_sets):
        return ""
    ors = [
        "("
        + " AND ".join(
            f"{quote_ident(k)}::tag = {quote_literal(stored_tag_value(v))}"
            for k, v in sorted(t.items())
        )
        + ")"
        for t in tag_sets
    ]
    return " AND (" + " OR ".join(ors) + ")"
