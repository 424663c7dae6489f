"""The InfluxDB store on a real influxd 1.6.7: layout, CQ rollup, escaping, outages, locks."""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import multiprocessing as mp
import socket
import threading
import time
import uuid

import numpy as np
import pytest
import requests

from app.core import engine
from app.core.errors import StorageUnavailable
from app.core.records import Batch, Query
from app.storage import Credentials, StoreOptions, open_store
from app.storage.influxdb.layout import RP_30M, RP_30S, parse_url
from app.storage.influxdb.protocol import (
    _escape_tag_raw,
    _parse_tag_value_1x,
    escape_tag_value,
    quote_literal,
    stored_tag_value,
)
from app.storage.influxdb.rollup import CQ_NAME, cq_select, cq_statement
from app.storage.influxdb.rollup import same_cq as _same_cq
from app.storage.influxdb.store import InfluxStore
from app.web import create_app
from tests.conftest import ADMIN, Client, now30
from tests.conftest import one_series_batch as batch

pytestmark = pytest.mark.influx

RET = {"raw": 0.0, "30s": 7 * 86400.0, "30m": 400 * 86400.0}


def options(tmp_path, retention=RET, token: str = "", timeout: float = 5.0) -> StoreOptions:
    """open_store's explicit options, as the app factory passes them from the settings."""
    meta = f"sqlite://{tmp_path / 'meta.db'}"
    return StoreOptions(90.0, retention, meta, Credentials(token=token), timeout)


def store_for(url: str, tmp_path, retention=RET, timeout: float = 5.0) -> InfluxStore:
    st = open_store(url, options(tmp_path, retention, timeout=timeout))
    assert isinstance(st, InfluxStore)
    return st


def db_of(url: str) -> str:
    return parse_url(url)[1]


def points(store: InfluxStore, host: str, start, end, res="30s", metric="m.x"):
    """The windows of each series the read finds."""
    return [sp.windows for sp in store.query(Query(host, start, end, res, metric=metric))]


# ---- layout -------------------------------------------------------------------------------


def test_layout_policies_cq_and_window_start_timestamps(influxd, tmp_path):
    url = influxd.new_db_url()
    db = db_of(url)
    store = store_for(url, tmp_path)
    t0 = now30() - 600
    store.write(batch("web-01", [t0 + 10 * k for k in range(6)], [100.0] * 6, unit="W"))
    rps = influxd.query(f'SHOW RETENTION POLICIES ON "{db}"')["results"][0]["series"][0]
    got = {r[0]: (r[1], r[-1]) for r in rps["values"]}
    assert got == {RP_30S: ("168h0m0s", True), RP_30M: ("9600h0m0s", False)}
    cqs = influxd.query("SHOW CONTINUOUS QUERIES")["results"][0]["series"]
    (text,) = [q[1] for s in cqs if s["name"] == db for q in s["values"] if q[0] == CQ_NAME]
    assert "RESAMPLE EVERY 15m FOR 1h" in text and "GROUP BY time(30m), *" in text
    assert _same_cq(text, cq_statement(db))  # so a restart leaves it alone
    # An outdated CQ (an older release's text) is replaced at start.
    influxd.query(f'DROP CONTINUOUS QUERY "{CQ_NAME}" ON "{db}"')
    influxd.query(cq_statement(db).replace("FOR 1h", "FOR 2h"))
    store_for(url, tmp_path).close()
    cqs = influxd.query("SHOW CONTINUOUS QUERIES")["results"][0]["series"]
    (text,) = [q[1] for s in cqs if s["name"] == db for q in s["values"] if q[0] == CQ_NAME]
    assert _same_cq(text, cq_statement(db))
    # Stored at the window START; fields typed as the dashboards expect.
    res = influxd.query(f'SELECT * FROM "{RP_30S}"."m.x"', db)["results"][0]["series"][0]
    row = dict(zip(res["columns"], res["values"][0], strict=True))
    assert row["time"] == t0 and row["host"] == "web-01" and row["unit"] == "W"
    assert row["energy_wh"] == pytest.approx(100 * 30 / 3600)
    keys = influxd.query(f'SHOW FIELD KEYS FROM "{RP_30S}"."m.x"', db)["results"][0]
    types = dict(keys["series"][0]["values"])
    assert types["count"] == "integer" and types["unit"] == "string"
    assert types["segs"] == "string" and types["mean"] == "float"
    # The read side answers right-edge labels.
    (sp,) = points(store, "web-01", t0, t0 + 30)
    assert sp.time.tolist() == [t0 + 30]
    # Opening twice is idempotent.
    store_for(url, tmp_path).close()
    store.close()


def test_retention_change_alters_policy_and_clamps_to_one_hour(influxd, tmp_path, caplog):
    url = influxd.new_db_url()
    db = db_of(url)
    store_for(url, tmp_path).close()
    ret = {"raw": 600.0, "30s": 2 * 86400.0, "30m": 30 * 86400.0}
    store = store_for(url, tmp_path, retention=ret)
    rps = influxd.query(f'SHOW RETENTION POLICIES ON "{db}"')["results"][0]["series"][0]
    got = {r[0]: r[1] for r in rps["values"]}
    assert got == {"rp_30s": "48h0m0s", "rp_30m": "720h0m0s", "rp_raw": "1h0m0s"}
    assert "under InfluxDB's 1h minimum" in caplog.text
    # Raw samples go to rp_raw with their own timestamps.
    t0 = now30() - 120
    store.write(batch("h", [t0 + 0.25, t0 + 1.5], [1.0, 2.0]))
    res = influxd.query('SELECT "value" FROM "rp_raw"."m.x"', db, epoch="ms")
    assert res["results"][0]["series"][0]["values"] == [[t0 * 1000 + 250, 1], [t0 * 1000 + 1500, 2]]
    store.close()


# ---- the 30-minute rollup -----------------------------------------------------------------


def test_cq_rollup_matches_engine_downsample(influxd, tmp_path):
    """The CQ's SELECT ... INTO, forced over an explicit range, equals engine.downsample."""
    url = influxd.new_db_url()
    db = db_of(url)
    store = store_for(url, tmp_path)
    t0 = (int(time.time()) // 1800 - 3) * 1800
    rng = np.random.default_rng(7)
    ts = np.sort(t0 + rng.uniform(0, 5400, 900))
    ts = np.unique(np.round(ts, 3))
    ts = ts[(ts < t0 + 1500) | (ts > t0 + 2100)]  # a gap longer than the hold limit
    vals = rng.normal(50, 20, len(ts)).round(3)
    store.write(batch("h", ts.tolist(), vals.tolist(), unit="W"))
    influxd.query(cq_select(db, f"time >= {t0}s AND time < {t0 + 5400}s"), db)
    (sp30,) = points(store, "h", t0, t0 + 5400)
    want = engine.downsample(
        sp30.time, sp30.min, sp30.max, sp30.last, sp30.count, sp30.covered, sp30.integral
    )
    (sp,) = points(store, "h", t0, t0 + 5400, "30m")
    assert sp.time.tolist() == want["label"].tolist() == [t0 + 1800, t0 + 3600, t0 + 5400]
    for f in engine.FINAL_FIELDS:
        assert np.allclose(getattr(sp, f), want[f], rtol=1e-12), f
    types = dict(
        influxd.query(f'SHOW FIELD KEYS FROM "{RP_30M}"."m.x"', db)["results"][0]["series"][0][
            "values"
        ]
    )
    assert types["count"] == "integer" and types["mean"] == "float"
    assert "energy_wh" in types
    # run_jobs runs the same rollup for the last hour: the newest window matches too.
    store.run_jobs(t0 + 5400)
    (again,) = points(store, "h", t0, t0 + 5400, "30m")
    assert np.allclose(again.mean, want["mean"], rtol=1e-12)
    store.close()


# ---- escaping -----------------------------------------------------------------------------

HOSTILE = [
    "it's",
    "' OR 1=1 --",
    'say "hi"',
    "a,b=c d",
    "C:\\path\\to",
    "back\\",
    "x\\,y",
    "x\\\\,y",
    "tab\\ space",
    "üñí©ødé ✓ 日本",
    "=,  ,=",
    '\\"',
]


def test_tag_value_escaping_model():
    for v in HOSTILE:
        text = escape_tag_value(v)
        assert _parse_tag_value_1x(text) == stored_tag_value(v)
    assert stored_tag_value("back\\") == "back\u29f5"
    assert stored_tag_value("C:\\path\\to") == "C:\\path\\to"
    assert _parse_tag_value_1x(_escape_tag_raw("x\\,y")) != "x\\,y"
    assert quote_literal("o'r\\") == "'o\\'r\\\\'"


def test_hostile_tag_values_and_units_round_trip(influxd, tmp_path):
    url = influxd.new_db_url()
    app = create_app(
        {"storage_url": url, "metadata_path": str(tmp_path / "m.db"), "admin_token": ADMIN}
    )
    c = Client(app.test_client())
    t0 = now30() - 300
    series = [
        {
            "metric": "weird.metric",
            "tags": {"v": v, "mean": "x"},
            "unit": 'u"\\' + str(i),
            "points": [[t0 + k, float(i * 100 + k)] for k in range(30)],
        }
        for i, v in enumerate(HOSTILE)
    ]
    r = c.samples("hostile", series)
    assert r.status_code == 200, r.json
    assert r.json["windows"] == len(HOSTILE)
    r = c.series("hostile", "weird.metric", t0 - 30, t0 + 60)
    assert r.status_code == 200
    got = {s["tags"]["v"]: (s["unit"], s["points"]) for s in r.json["series"]}
    assert set(got) == set(HOSTILE)
    for i, v in enumerate(HOSTILE):
        unit, pts = got[v]
        assert unit == 'u"\\' + str(i)
        assert [p["count"] for p in pts] == [30], v
        assert pts[0]["min"] == i * 100 and pts[0]["max"] == i * 100 + 29, v
    # Each hostile value can be asked for alone.
    for v in HOSTILE:
        r = c.series("hostile", "weird.metric", t0 - 30, t0 + 60, **{"tag.v": v})
        assert [s["tags"]["v"] for s in r.json["series"]] == [v]
        assert [p["count"] for p in r.json["series"][0]["points"]] == [30], v  # tags in WHERE
    # The unit string field survives line protocol's string escaping.
    db = db_of(url)
    res = influxd.query('SELECT "unit"::field FROM "weird.metric"', db)["results"][0]
    assert {row[1] for row in res["series"][0]["values"]} == {s["unit"] for s in series}
    app.extensions["fleetpulse"].store.close()


# ---- merging across processes -------------------------------------------------------------


def _writer(url: str, meta: str, parts: list, host: str) -> None:
    store = open_store(url, StoreOptions(90.0, RET, meta))
    for ts, vals, carry in parts:
        store.write(batch(host, ts, vals, carry))


def test_concurrent_processes_split_batches_equal_one_batch(influxd, tmp_path):
    """4 processes write interleaved pieces of the same windows at once: the host lock holds."""
    url = influxd.new_db_url()
    t0 = (int(time.time()) // 30 - 40) * 30
    ts = [t0 + 1.5 * k for k in range(400)]
    vals = [float((k * 7) % 23) for k in range(400)]
    store = store_for(url, tmp_path)
    store.write(batch("one", ts, vals))
    cuts = [*list(range(0, 400, 25)), 400]
    parts = [
        (ts[a:b], vals[a:b], (ts[a - 1], vals[a - 1]) if a else None)
        for a, b in itertools.pairwise(cuts)
    ]
    ctx = mp.get_context("spawn")  # no SQLite state inherited across fork
    meta = f"sqlite://{tmp_path / 'meta.db'}"
    procs = [ctx.Process(target=_writer, args=(url, meta, parts[i::4], "many")) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    (a,) = points(store, "one", t0 - 60, t0 + 900)
    (b,) = points(store, "many", t0 - 60, t0 + 900)
    assert len(a.time) == len(b.time) == 20
    assert a.time.tolist() == b.time.tolist() and a.count.tolist() == b.count.tolist()
    for f in ("mean", "min", "max", "last", "covered", "integral"):
        assert np.allclose(getattr(a, f), getattr(b, f), rtol=1e-9, atol=1e-9), f
    store.close()


def test_reverse_order_pieces_read_stored_state(influxd, tmp_path):
    """Pieces sent newest first must read the stored state (the high-water mark says so)."""
    url = influxd.new_db_url()
    store = store_for(url, tmp_path)
    t0 = now30() - 300
    ts = [t0 + 2.0 * k for k in range(60)]
    vals = [float(k % 5) for k in range(60)]
    store.write(batch("one", ts, vals))
    for a, b in ((40, 60), (20, 40), (0, 20)):
        store.write(batch("rev", ts[a:b], vals[a:b], (ts[a - 1], vals[a - 1]) if a else None))
    (x,) = points(store, "one", t0 - 60, t0 + 300)
    (y,) = points(store, "rev", t0 - 60, t0 + 300)
    assert x.count.tolist() == y.count.tolist()
    assert np.allclose(x.mean, y.mean, rtol=1e-12) and np.allclose(x.covered, y.covered)
    store.close()


# ---- outages ------------------------------------------------------------------------------


def test_influxd_down_503_then_retry_converges(influxd, tmp_path):
    """Stop the real influxd: 503 + Retry-After quickly, /readyz 503; restart: the retried
    batch is stored and nothing accepted before is lost."""
    url = influxd.new_db_url()
    app = create_app(
        {
            "storage_url": url,
            "metadata_path": str(tmp_path / "m.db"),
            "admin_token": ADMIN,
            "influxdb_timeout": 2.0,
        }
    )
    c = Client(app.test_client())
    t0 = now30() - 300
    pts = [[t0 + 2.0 * k, float(k % 9)] for k in range(60)]
    whole = [{"metric": "cpu.percent", "points": pts}]
    assert c.samples("whole", whole).status_code == 200
    first = [{"metric": "cpu.percent", "points": pts[:20]}]
    second = [{"metric": "cpu.percent", "points": pts[20:], "carry": pts[19]}]
    assert c.samples("split", first).status_code == 200
    influxd.stop()
    try:
        t = time.monotonic()
        r = c.samples("split", second)
        assert r.status_code == 503 and r.headers["Retry-After"]
        r = c.get("/readyz", token=None)
        assert r.status_code == 503 and r.headers["Retry-After"]
        r = c.series("split", "cpu.percent", t0 - 60, t0 + 300)
        assert r.status_code == 503
        assert time.monotonic() - t < 6
        assert c.get("/api/v1/hosts").status_code == 200  # the registry needs no influxd
    finally:
        influxd.start()
    assert c.get("/readyz", token=None).status_code == 200
    assert c.samples("split", second).status_code == 200
    a = c.series("whole", "cpu.percent", t0 - 60, t0 + 300).json["series"][0]["points"]
    b = c.series("split", "cpu.percent", t0 - 60, t0 + 300).json["series"][0]["points"]
    assert len(a) == len(b) == 4
    for x, y in zip(a, b, strict=True):
        assert x["count"] == y["count"] and x["mean"] == pytest.approx(y["mean"], rel=1e-9)
    app.extensions["fleetpulse"].store.close()


def test_slow_influx_times_out_and_start_without_influx(tmp_path):
    """A server that accepts and never answers: StorageUnavailable after the timeout; a store
    opened while influxd is unreachable starts anyway and reports 503 until it is back."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(srv.accept()[0])

    th = threading.Thread(target=accept, daemon=True)
    th.start()
    try:
        port = srv.getsockname()[1]
        store = store_for(f"influxdb://127.0.0.1:{port}/fp_slow", tmp_path, timeout=0.5)
        for op in (store.ping, lambda: store.write(batch("h", [now30() + 1.0], [1.0]))):
            t = time.monotonic()
            with pytest.raises(StorageUnavailable):
                op()
            assert time.monotonic() - t < 1.0  # one budget for the whole operation
    finally:
        stop.set()
        th.join()
        for s in held:
            s.close()
        srv.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    store = store_for(f"influxdb://127.0.0.1:{dead}/fp_dead", tmp_path, timeout=0.5)
    with pytest.raises(StorageUnavailable):
        store.ping()


def test_write_checks_the_answer(influxd, tmp_path):
    """Anything but 204 raises; the good lines of a partial write are never relied on."""
    url = influxd.new_db_url()
    store = store_for(url, tmp_path)
    store.http.write(b"m.x,host=h count=1i\n", store.db, RP_30S)
    with pytest.raises(RuntimeError, match="400"):
        store.http.write(b"m.x,host=h count=1.5\n", store.db, RP_30S)  # float into integer
    with pytest.raises(StorageUnavailable):
        store.http.write(b"m.x,host=h v=1\n", "fp_no_such_" + uuid.uuid4().hex[:6], RP_30S)
    r = requests.get(influxd.http_url + "/ping", timeout=5)
    assert r.status_code == 204
    store.close()


# ---- InfluxDB 2.x: setup calls against a recording HTTP server (no 2.x server here) --------


class Recorder:
    """A tiny 2.x look-alike on 127.0.0.1 that records requests and keeps buckets/DBRPs/tasks."""

    def __init__(self) -> None:
        import http.server
        import json
        from urllib.parse import parse_qs, urlsplit

        self.requests: list[tuple[str, str, dict, dict, bytes]] = []
        self.buckets: dict[str, dict] = {}
        self.dbrps: list[dict] = []
        self.tasks: list[dict] = []
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a) -> None:
                pass

            def _answer(self, status: int, body=None) -> None:
                raw = isinstance(body, bytes)  # a CSV answer of the v2 query API
                data = b"" if body is None else body if raw else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                rec.requests.append((self.command, parts.path, q, dict(self.headers), body))
                doc = json.loads(body) if body and body[:1] == b"{" else {}
                self._answer(*rec.route(self.command, parts.path, q, doc))

            do_GET = do_POST = do_PATCH = do_DELETE = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def route(self, method: str, path: str, q: dict, doc: dict):
        org = {"id": "0000000000000001", "name": "acme"}
        if path == "/ping":
            return 204, None
        if path == "/api/v2/orgs":
            return 200, {"orgs": [org] if q.get("org") == "acme" else []}
        if path == "/api/v2/buckets" and method == "GET":
            b = self.buckets.get(q.get("name", ""))
            return 200, {"buckets": [b] if b else []}
        if path == "/api/v2/buckets" and method == "POST":
            b = {**doc, "id": f"b{len(self.buckets) + 1:015d}", "type": "user"}
            self.buckets[b["name"]] = b
            return 201, b
        if path.startswith("/api/v2/buckets/") and method == "PATCH":
            (b,) = [b for b in self.buckets.values() if b["id"] == path.rsplit("/", 1)[1]]
            b.update(doc)
            return 200, b
        if path == "/api/v2/dbrps" and method == "GET":
            hits = [
                d
                for d in self.dbrps
                if d["database"] == q["db"] and d["retention_policy"] == q["rp"]
            ]
            return 200, {"content": hits}
        if path == "/api/v2/dbrps" and method == "POST":
            d = {**doc, "id": f"d{len(self.dbrps) + 1:015d}", "virtual": False}
            self.dbrps.append(d)
            return 201, d
        if path == "/api/v2/tasks" and method == "GET":
            return 200, {"tasks": [t for t in self.tasks if t["name"] == q.get("name")]}
        if path == "/api/v2/tasks" and method == "POST":
            t = {**doc, "id": f"t{len(self.tasks) + 1:015d}", "name": "fleetpulse_30m"}
            self.tasks.append(t)
            return 201, t
        if path.startswith("/api/v2/tasks/") and method == "PATCH":
            self.tasks[0].update(doc)
            return 200, self.tasks[0]
        if path == "/write":
            return 204, None
        if path == "/query":
            return 200, {"results": [{"statement_id": 0}]}
        if path == "/api/v2/query" and method == "POST":
            return 200, b",result,table,_value\r\n,_result,0,1\r\n"
        return 404, {"code": "not found", "message": path}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_influxdb2_setup_buckets_dbrps_task_and_v1_data_path(tmp_path):
    pytest.importorskip("influxdb_client")
    from app.storage.influxdb.v2 import Influx2Store, flux_time, task_flux

    rec = Recorder()
    try:
        url = f"influxdb2://127.0.0.1:{rec.port}/?org=acme&db=fleet"
        store = open_store(url, options(tmp_path, token="tok-123"))
        assert isinstance(store, Influx2Store) and store.db == "fleet"
        assert {n: b["retentionRules"][0]["everySeconds"] for n, b in rec.buckets.items()} == {
            "fleet/rp_30s": 7 * 86400,
            "fleet/rp_30m": 400 * 86400,
        }
        assert {(d["database"], d["retention_policy"], d["default"]) for d in rec.dbrps} == {
            ("fleet", "rp_30s", True),
            ("fleet", "rp_30m", False),
        }
        assert {d["bucketID"] for d in rec.dbrps} == {b["id"] for b in rec.buckets.values()}
        (task,) = rec.tasks
        assert task["orgID"] == "0000000000000001"
        assert task_flux("fleet") in task["flux"]
        assert 'option task = {name: "fleetpulse_30m", every: 15m}' in task["flux"]
        assert all(h.get("Authorization") == "Token tok-123" for _, p, _, h, _ in rec.requests)
        # Idempotent; a changed retention patches the bucket, nothing is created twice.
        n_posts = sum(m == "POST" for m, *_ in rec.requests)
        ret = {**RET, "30s": 2 * 86400.0}
        Influx2Store(url, options(tmp_path, ret, token="tok-123")).close()
        assert sum(m == "POST" for m, *_ in rec.requests) == n_posts
        assert rec.buckets["fleet/rp_30s"]["retentionRules"][0]["everySeconds"] == 2 * 86400
        # The data path is the v1 one: /write?db=fleet&rp=rp_30s with the token header.
        rec.requests.clear()
        t0 = now30() - 120
        store.write(batch("h", [t0 + 1.0, t0 + 2.0], [1.0, 2.0]))
        ((method, _path, q, headers, body),) = [r for r in rec.requests if r[1] == "/write"]
        assert (method, q["db"], q["rp"], q["precision"]) == ("POST", "fleet", "rp_30s", "s")
        assert headers["Authorization"] == "Token tok-123"
        assert body.startswith(b"m.x,host=h mean=")
        # The job: the task's Flux over the refresh range through the v2 query API...
        rec.requests.clear()
        store.run_jobs(time.time())
        fluxes = v2_queries(rec, "acme", "tok-123")
        assert fluxes and all('from(bucket: "fleet/rp_30s")' in f for f in fluxes)
        assert all("|> range(start: " in f and "r.host ==" not in f for f in fluxes)
        # ...and a late write's windows, for that host alone; its marks are cleared after.
        old = (int(time.time()) // 1800 - 6) * 1800
        store.write(batch("late-h", [old + 1.0, old + 2.0], [1.0, 2.0]))
        sids = [f[0] for f in store.registry.find("late-h", None, {}, None)]
        assert store.registry.late.pending(sids, 0, 2e10) == {sids[0]: {old + 1800}}
        rec.requests.clear()
        assert store.run_jobs(time.time())["late"] == 1
        (late,) = [f for f in v2_queries(rec, "acme", "tok-123") if "r.host ==" in f]
        assert 'r.host == "late-h"' in late and f"range(start: {flux_time(old)}, stop: " in late
        assert store.registry.late.pending(sids, 0, 2e10) == {}
        store.close()
    finally:
        rec.close()


def v2_queries(rec: Recorder, org: str, token: str) -> list[str]:
    """The Flux scripts posted to the v2 query API, each checked for its org and token."""
    out = []
    for _, path, q, headers, body in rec.requests:
        if path == "/api/v2/query":
            assert q["org"] == org and headers["Authorization"] == f"Token {token}"
            out.append(json.loads(body)["query"])
    return out


def test_flux_task_text():
    from app.storage.influxdb.v2 import flux_string, task_flux

    text = task_flux("fleet")
    assert 'from(bucket: "fleet/rp_30s")' in text and text.count('to(bucket: "fleet/rp_30m")') == 2
    assert 'timeSrc: "_start"' in text and "every: 30m" in text
    assert "date.truncate(t: -1h, unit: 1h)" in text
    for f, fn in (("integral", "sum"), ("covered", "sum"), ("count", "sum"), ("min", "min")):
        assert f'roll(field: "{f}", fn: {fn})' in text
    assert "r.integral / r.covered" in text and "option task" not in text
    assert flux_string('a"b\\${x}') == '"a\\"b\\\\\\${x}"'


@pytest.mark.e2e
@pytest.mark.parametrize("threads", [1, 4])
def test_gunicorn_workers_merge_the_same_windows_concurrently(influxd, tmp_path, threads):
    """3 gunicorn workers on influxd (sync, and gthread with group commit); pieces of the same
    windows POSTed at once from 6 threads (so several workers merge one window together) equal
    one whole batch."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.conftest import start_gunicorn, stop_gunicorn

    env = {"FLEETPULSE_THREADS": str(threads)}
    api = start_gunicorn(tmp_path, workers=3, storage_url=influxd.new_db_url(), env_extra=env)
    try:
        assert api.request("GET", "/readyz").status_code == 200
        t0 = now30() - 600
        pts = [[t0 + 0.75 * k, float((k * 5) % 17)] for k in range(480)]
        whole, split = api.token_for("agent", "whole"), api.token_for("agent", "split")
        body = [{"metric": "cpu.percent", "tags": {"cpu": "0"}, "points": pts}]
        assert api.post_samples(whole, "whole", body).status_code == 200
        pieces = [
            {
                "metric": "cpu.percent",
                "tags": {"cpu": "0"},
                "points": pts[a : a + 16],
                **({"carry": pts[a - 1]} if a else {}),
            }
            for a in range(0, 480, 16)
        ]
        with ThreadPoolExecutor(6) as pool:
            codes = list(
                pool.map(lambda p: api.post_samples(split, "split", [p]).status_code, pieces)
            )
        assert codes == [200] * len(pieces)
        reader = api.token_for("reader")
        got = {}
        for h in ("whole", "split"):
            r = api.request(
                "GET",
                "/api/v1/series",
                reader,
                params={"host": h, "metric": "cpu.percent", "start": t0 - 60, "end": t0 + 600},
            )
            got[h] = r.json()["series"][0]["points"]
        assert len(got["whole"]) == len(got["split"]) == 12
        for a, b in zip(got["whole"], got["split"], strict=True):
            assert a["count"] == b["count"] and a["time"] == b["time"]
            for f in ("mean", "min", "max", "last", "covered"):
                assert math.isclose(a[f], b[f], rel_tol=1e-9, abs_tol=1e-9), (f, a, b)
    finally:
        stop_gunicorn(api.proc)


def test_missing_influxd_fails_under_ci(monkeypatch):
    """With CI=true a missing influxd fails the suite instead of skipping the store's tests."""
    from tests.influx_fixtures import influxd_binary

    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="influxd is not installed"):
        influxd_binary()
    monkeypatch.setenv("CI", "false")
    assert influxd_binary() is None


def test_an_in_order_batch_after_a_late_one_reads_nothing(influxd, tmp_path):
    """A late batch's tails stop at the newest stored sample's window, so the high-water mark
    does not rise past what is stored and the next in-order batch needs no read."""

    def lp(ts: float, v: float) -> Batch:
        nan = np.array([math.nan])
        one = np.array([ts]), np.array([v])
        return Batch("h", [("m.x", ())], [None], np.zeros(1, np.int64), *one, nan, nan, True)

    t0 = now30() - 3600
    store = open_store(influxd.new_db_url(), StoreOptions(metadata_url=f"sqlite://{tmp_path}/m.db"))
    queries, real = [], store.http.query
    store.http.query = lambda stmts, **kw: (queries.append(stmts), real(stmts, **kw))[1]
    store.write(lp(t0 + 31, 2.0))  # window t0+60
    store.write(lp(t0 + 0, 1.0))  # late: holds into t0+60, no further
    queries.clear()
    store.write(lp(t0 + 65, 3.0))  # in order, window t0+90, nothing stored there
    store.close()
    assert queries == []
