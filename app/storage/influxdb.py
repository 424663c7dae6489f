"""The InfluxDB store: 1.x HTTP protocol (/write, InfluxQL /query), served by 1.x, 2.x and 3.x.

Layout (fixed, the Grafana dashboards use it): database from the URL; retention policies
``rp_30s`` (DEFAULT), ``rp_30m`` and ``rp_raw`` (only when raw samples are kept); measurement =
metric, tags = host + the series' tags; fields mean/min/max/last/count/covered/integral
[/energy_wh], unit, and the merge state prev_ts/prev_val/segs. Timestamps are window STARTS,
so the continuous query's GROUP BY time(30m) groups the right 30-second windows; reads add the
window length to answer right-edge labels.

The series registry, the host list and each series' newest sample live in the metadata SQLite
file (``Registry``), exactly as in the SQLite store, so those reads are identical and fast.
"""

from __future__ import annotations

import base64
import fcntl
import logging
import math
import os
import threading
import time
import zlib
from collections import defaultdict
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

from app import engine
from app.settings import Settings, format_duration
from app.storage.base import (
    Batch,
    Query,
    SeriesPoints,
    StorageUnavailable,
    Store,
)
from app.storage.influx_proto import (
    InfluxHTTP,
    escape_string_field,
    fmt_float,
    quote_ident,
    quote_literal,
    series_key,
    stored_tag_value,
)
from app.storage.sqldb import REGISTRY_SCHEMA, Registry, RegistryReads, SqliteDB
from app.storage.sqlite import pack_segs, unpack_state

log = logging.getLogger(__name__)

RP_30S, RP_30M, RP_RAW = "rp_30s", "rp_30m", "rp_raw"
CQ_NAME = "cq_30m"
MIN_DURATION = 3600.0  # influxd 1.x refuses retention policies shorter than one hour
LOCK_SLOTS = 64
POINT_FIELDS = ("mean", "min", "max", "last", "count", "covered", "integral")

# Per series: the newest window label ever *attempted* (bumped before each write). A batch
# whose windows all lie after it cannot have stored merge state, so it skips the read.
SCHEMA = (
    REGISTRY_SCHEMA
    + """
CREATE TABLE IF NOT EXISTS influx_hwm (
    series_id INTEGER PRIMARY KEY,
    label INTEGER NOT NULL
);
"""
)


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


def _ns(t: float) -> int:
    """Epoch seconds (maybe fractional) -> integer nanoseconds, exact for whole seconds."""
    whole = math.floor(t)
    return whole * 1_000_000_000 + round((t - whole) * 1e9)


class HostLocks:
    """Serialise read-merge-write per host across workers: flock on one of 64 files."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._fds: dict[int, int] = {}
        self._pid = os.getpid()
        self._thread_locks = [threading.Lock() for _ in range(LOCK_SLOTS)]

    def _fd(self, slot: int) -> int:
        if self._pid != os.getpid():
            self._fds, self._pid = {}, os.getpid()  # flock fds must not be shared after fork
        fd = self._fds.get(slot)
        if fd is None:
            fd = os.open(self.dir / f"{slot:02d}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            self._fds[slot] = fd
        return fd

    def acquire(self, host: str, timeout: float) -> int:
        """Take the host's slot within ``timeout``, else StorageUnavailable (no request hangs)."""
        slot = zlib.crc32(host.encode()) % LOCK_SLOTS
        deadline = time.monotonic() + timeout
        if not self._thread_locks[slot].acquire(timeout=timeout):
            raise StorageUnavailable("another request for this host is still being stored")
        fd = self._fd(slot)
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return slot
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self._thread_locks[slot].release()
                    raise StorageUnavailable(
                        "another request for this host is still being stored"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.02)

    def release(self, slot: int) -> None:
        fcntl.flock(self._fd(slot), fcntl.LOCK_UN)
        self._thread_locks[slot].release()

    def close(self) -> None:
        if self._pid == os.getpid():
            for fd in self._fds.values():
                os.close(fd)
        self._fds = {}


class InfluxStore(RegistryReads, Store):
    """The 1.x protocol store; ``influx_v2.Influx2Store`` reuses it with another setup."""

    def __init__(self, settings: Settings, retention: dict[str, float]) -> None:
        base, db, self.options = parse_url(settings.storage_url)
        self.db = db
        self.hold = settings.hold
        self.timeout = settings.influxdb_timeout
        self.retention = {k: clamp_duration(k, v) for k, v in retention.items()}
        self.keep_raw = retention.get("raw", 0) > 0
        self.http = InfluxHTTP(
            base,
            settings.influxdb_timeout,
            token=settings.influxdb_token,
            username=settings.influxdb_username,
            password=settings.influxdb_password,
        )
        self.meta = SqliteDB(settings.metadata_path, SCHEMA)
        self.registry = Registry(self.meta)
        self.locks = HostLocks(Path(settings.metadata_path).parent / "influx-locks")
        self._ready = False
        try:
            self.ensure_schema()
        except StorageUnavailable as e:  # start anyway: /readyz says 503, setup retries later
            log.warning("influxdb not reachable at start, will retry: %s", e)

    # ---- setup ---------------------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Create, idempotently, the database, the retention policies and the CQ."""
        db = quote_ident(self.db)
        self.http.query([f"CREATE DATABASE {db}"], post=True)
        (res,) = self.http.query([f"SHOW RETENTION POLICIES ON {db}"])
        existing = {}
        for row in (res.get("series") or [{}])[0].get("values", []):
            existing[row[0]] = (_influx_duration_seconds(row[1]), bool(row[-1]))
        wanted = [(RP_30S, "30s", True), (RP_30M, "30m", False)]
        if self.keep_raw:
            wanted.append((RP_RAW, "raw", False))
        stmts = []
        for name, kind, default in wanted:
            secs = self.retention.get(kind, 0.0)
            dur = _duration_text(secs)
            rp = f"{quote_ident(name)} ON {db} DURATION {dur} REPLICATION 1"
            if name not in existing:
                stmts.append(f"CREATE RETENTION POLICY {rp}" + (" DEFAULT" if default else ""))
            elif existing[name][0] != secs or (default and not existing[name][1]):
                log.info("retention policy %s: duration -> %s", name, dur)
                stmts.append(f"ALTER RETENTION POLICY {rp}" + (" DEFAULT" if default else ""))
        if stmts:
            self.http.query(stmts, post=True)
        self._ensure_cq()
        self._ready = True

    def _ensure_cq(self) -> None:
        (res,) = self.http.query(["SHOW CONTINUOUS QUERIES"])
        want = cq_statement(self.db)
        current = None
        for series in res.get("series", []):
            if series.get("name") == self.db:
                for name, text in series.get("values", []):
                    if name == CQ_NAME:
                        current = text
        if current is not None and _same_cq(current, want):
            return
        if current is not None:  # its text changed (an upgrade): replace it
            log.info("continuous query %s: replacing it", CQ_NAME)
            drop = f"DROP CONTINUOUS QUERY {quote_ident(CQ_NAME)} ON {quote_ident(self.db)}"
            try:
                self.http.query([drop], post=True)
            except RuntimeError as e:  # another worker dropped it first
                if "not found" not in str(e):
                    raise
        try:
            self.http.query([want], post=True)
        except RuntimeError as e:  # another worker created it at the same moment
            if "already exists" not in str(e):
                raise

    def _check_ready(self) -> None:
        if not self._ready:
            self.ensure_schema()

    # ---- writing -------------------------------------------------------------------------

    def write(self, batch: Batch) -> int:
        with self.http.budget():
            return self._write(batch)

    def _write(self, batch: Batch) -> int:
        s = batch.summaries
        self._check_ready()
        bounds = np.searchsorted(s.sid, np.arange(len(batch.keys) + 1))
        slot = self.locks.acquire(batch.host, self.http.remaining())
        try:
            with self.meta.tx() as con:
                ids, fresh = self.registry.ids(con, batch.host, batch.keys, batch.units)
                need = self._bump_hwm(con, ids, s, bounds)
            self.registry.keep(fresh)  # only ids whose transaction committed
            stored = self._read_states(batch, bounds, need) if need else {}
            if stored:
                merged, states = engine.merge_into(s, stored, self.hold)
                heads, segs = _state_fields(states)
            else:  # nothing stored yet (the usual case): each row's state is its own summary
                merged = s
                heads, segs = _fresh_state_fields(s)
            w = engine.finalize(merged, self.hold)
            keep = np.flatnonzero(w.covered > 0)
            body = self._lines(batch, merged, w, heads, segs, keep)
            if body:
                self.http.write(body, self.db, RP_30S, "s")
            if self.keep_raw:
                self.http.write(self._raw_lines(batch), self.db, RP_RAW, "ns")
            with self.meta.tx() as con:
                self.registry.update_latest(
                    con, ids, batch.latest_ts.tolist(), batch.latest_val.tolist()
                )
        finally:
            self.locks.release(slot)
        return len(keep)

    def _bump_hwm(self, con, ids: list[int], s: engine.Summaries, bounds: np.ndarray) -> list[int]:
        """Raise each series' attempted-label mark; return the keys that may have stored state."""
        uniq = list(set(ids))
        old: dict[int, int] = {}
        for c in range(0, len(uniq), 500):
            part = uniq[c : c + 500]
            rows = con.execute(
                f"SELECT series_id, label FROM influx_hwm WHERE series_id IN "
                f"({','.join('?' * len(part))})",
                part,
            ).fetchall()
            old.update(rows)
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
        if new:
            con.executemany(
                "INSERT INTO influx_hwm (series_id, label) VALUES (?, ?) "
                "ON CONFLICT(series_id) DO UPDATE SET label=max(label, excluded.label)",
                list(new.items()),
            )
        return need

    def _read_states(
        self, batch: Batch, bounds: np.ndarray, need: list[int]
    ) -> dict[tuple[int, int], engine.State]:
        """The stored merge state of the windows the batch touches: one /query, one statement
        per metric (GROUP BY * and exact tag matching here, so no tag value goes into InfluxQL)."""
        s = batch.summaries
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
        stored: dict[tuple[int, int], engine.State] = {}
        for metric, res in zip(metrics, self.http.query(stmts, db=self.db), strict=True):
            for series in res.get("series", []):
                k = by_metric[metric].get(_tag_key(series.get("tags") or {}))
                if k is None:
                    continue
                for t, pts, pv, segs in series["values"]:
                    blob = base64.b64decode(segs) if segs else b""
                    stored[(k, int(t) + engine.WINDOW)] = unpack_state(pts, pv, blob)
        return stored

    def _lines(
        self,
        batch: Batch,
        merged: engine.Summaries,
        w: engine.Windows,
        heads: tuple[list[float], list[float]],
        segs: list[str],
        keep: np.ndarray,
    ) -> bytes:
        """One line per window with covered > 0, in the fixed field layout."""
        prefix = []
        for (metric, tags), unit in zip(batch.keys, batch.units, strict=True):
            extra = "" if unit is None else f",unit={escape_string_field(unit)}"
            prefix.append((series_key(metric, batch.host, tags) + " ", extra, unit == "W"))
        cols = [c.tolist() for c in (w.mean, w.min, w.max, w.last, w.covered, w.integral)]
        count = w.count.tolist()
        sid = merged.sid.tolist()
        label = merged.label.tolist()
        prev_ts, prev_val = heads
        out = []
        for i in keep.tolist():
            key, unit_field, watts = prefix[sid[i]]
            mean, vmin, vmax, last, covered, integral = (c[i] for c in cols)
            fields = (
                f"mean={fmt_float(mean)},min={fmt_float(vmin)},max={fmt_float(vmax)},"
                f"last={fmt_float(last)},count={count[i]}i,covered={fmt_float(covered)},"
                f"integral={fmt_float(integral)}"
            )
            if watts:
                fields += f",energy_wh={fmt_float(integral / 3600.0)}"
            if not math.isnan(prev_ts[i]):
                fields += f",prev_ts={fmt_float(prev_ts[i])},prev_val={fmt_float(prev_val[i])}"
            out.append(f'{key}{fields}{unit_field},segs="{segs[i]}" {label[i] - engine.WINDOW}\n')
        return "".join(out).encode()

    def _raw_lines(self, batch: Batch) -> bytes:
        keys = [series_key(m, batch.host, tags) for m, tags in batch.keys]
        return "".join(
            f"{keys[k]} value={fmt_float(v)} {_ns(t)}\n"
            for k, t, v in zip(
                batch.raw_sid.tolist(), batch.raw_ts.tolist(), batch.raw_val.tolist(), strict=True
            )
        ).encode()

    # ---- reading -------------------------------------------------------------------------

    def query(self, q: Query) -> list[SeriesPoints]:
        with self.http.budget():
            return self._query(q)

    def _query(self, q: Query) -> list[SeriesPoints]:
        found = self.registry.find(q.host, q.metric, q.tags, q.unit)
        if not found:
            return []
        self._check_ready()
        rp, width = (RP_30S, engine.WINDOW) if q.resolution == "30s" else (RP_30M, 1800)
        metrics = sorted({m for _, m, _, _ in found})
        lo, hi = _ns(q.start - width), _ns(q.end - width)
        sel = ", ".join(f"{quote_ident(f)}::field" for f in POINT_FIELDS)
        host = quote_literal(q.host)
        stmts = [
            f"SELECT {sel} FROM {quote_ident(rp)}.{quote_ident(m)} "
            f'WHERE "host"::tag = {host} AND time > {lo} AND time <= {hi} GROUP BY *'
            for m in metrics
        ]
        got: dict[tuple[str, tuple], list] = {}
        for metric, res in zip(metrics, self.http.query(stmts, db=self.db), strict=True):
            for series in res.get("series", []):
                got[(metric, _tag_key(series.get("tags") or {}))] = series["values"]
        out = []
        for _, metric, tags, unit in found:
            key = tuple(sorted((k, stored_tag_value(v)) for k, v in tags.items()))
            rows = got.get((metric, key), [])
            rows = [r for r in rows if r[6] is not None and r[6] > 0]  # covered > 0
            a = np.array(
                [[np.nan if x is None else x for x in r] for r in rows], dtype=np.float64
            ).reshape(-1, 8)
            out.append(
                SeriesPoints(
                    metric,
                    tags,
                    unit,
                    a[:, 0].astype(np.int64) + width,
                    a[:, 1],
                    a[:, 2],
                    a[:, 3],
                    a[:, 4],
                    a[:, 5].astype(np.int64),
                    a[:, 6],
                    a[:, 7],
                )
            )
        return out

    def ping(self) -> None:
        with self.http.budget():
            self.http.ping()
            self._check_ready()

    def run_jobs(self, now: float) -> dict[str, int]:
        """The CQ does the work inside influxd; this runs the same rollup over the last hour
        at once (after a restart, or for a test), since CQs never backfill."""
        self._check_ready()
        first = math.floor((now - 3600) / engine.WINDOW_30M) * engine.WINDOW_30M
        end = math.ceil(now / engine.WINDOW_30M) * engine.WINDOW_30M
        (res,) = self.http.query(
            [cq_select(self.db, f"time >= {first}s AND time < {end}s")], db=self.db, post=True
        )
        written = 0
        for series in res.get("series", []):
            for row in series.get("values", []):
                written += int(row[1] or 0)
        return {"downsampled": written}

    def close(self) -> None:
        self.meta.close()
        self.locks.close()


def _state_fields(states: list[engine.State]) -> tuple[tuple[list[float], list[float]], list[str]]:
    """prev_ts/prev_val columns and the base64 ``segs`` text of merged states."""
    heads = ([st.prev_ts for st in states], [st.prev_val for st in states])
    segs = [base64.b64encode(pack_segs(st.segs)).decode() if st.segs else "" for st in states]
    return heads, segs


SEG_B64 = 96  # one 9 x float64 segment row = 72 bytes = 96 base64 chars


def _fresh_state_fields(s: engine.Summaries) -> tuple[tuple[list[float], list[float]], list[str]]:
    """What ``_state_fields(merge_into(s, {})[1])`` gives, vectorised: one segment per row
    with samples (its own summary, as ``pack_segs`` packs it), none for count-0 rows."""
    rows = np.column_stack(
        [s.n.astype(np.float64)] + [getattr(s, f) for f in engine.SUMMARY_FIELDS[1:9]]
    ).astype("<f8")
    text = base64.b64encode(rows.tobytes()).decode()
    has = (s.n > 0).tolist()
    segs = [text[i * SEG_B64 : (i + 1) * SEG_B64] if h else "" for i, h in enumerate(has)]
    return (s.prev_ts.tolist(), s.prev_val.tolist()), segs


def _tag_key(tags: dict[str, str]) -> tuple:
    """A series' tags as returned by GROUP BY * (empty = absent), without host, sorted."""
    return tuple(sorted((k, v) for k, v in tags.items() if v != "" and k != "host"))


def _same_cq(current: str, want: str) -> bool:
    """SHOW CONTINUOUS QUERIES re-renders the text; compare without quotes and spacing."""

    def norm(t: str) -> str:
        return "".join(t.replace('"', "").lower().split())

    return norm(current) == norm(want)


def open_influx(settings: Settings, retention: dict[str, float]) -> Store:
    """The store for ``influxdb://`` (1.x protocol) or ``influxdb2://`` (2.x setup, same data)."""
    if settings.storage_url.startswith("influxdb2://"):
        from app.storage.influx_v2 import Influx2Store

        return Influx2Store(settings, retention)
    return InfluxStore(settings, retention)
