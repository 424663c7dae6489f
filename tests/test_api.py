"""The contract (CONTRACT.md sections 2, 3, 4, 6) through the Flask test client, on every store."""

from __future__ import annotations

import gzip
import math
import sqlite3
import time

import orjson
import pytest

from tests.conftest import ADMIN, now30

WORKED_OFFS = [0, 2, 5, 6, 7, 10, 14, 20, 25, 28]
WORKED_VALS = [0, 12, 32, 48, 28, 24, 28, 32, 36, 28]


def cpu(points, carry=None, unit="percent", metric="cpu.percent", tags=None):
    s = {"metric": metric, "tags": tags if tags is not None else {"cpu": "total"}, "unit": unit}
    s["points"] = points
    if carry is not None:
        s["carry"] = carry
    return s


def points_of(client, host, metric, start, end, **kw):
    r = client.series(host, metric, start, end, **kw)
    assert r.status_code == 200, r.json
    return [p for s in r.json["series"] for p in s["points"]]


# ---- the worked example, retries and splits ------------------------------------------------


def test_worked_example_through_http(client):
    t0 = now30() - 120
    pts = [[t0 + o, v] for o, v in zip(WORKED_OFFS, WORKED_VALS, strict=True)] + [[t0 + 30, 28]]
    r = client.samples("web-01", [cpu(pts)])
    assert r.status_code == 200, r.json
    assert r.json == {"accepted": 11, "windows": 2}
    (w,) = [p for p in points_of(client, "web-01", "cpu.percent", t0, t0 + 30)]
    assert w["mean"] == pytest.approx(788 / 30, rel=1e-12)
    assert w["covered"] == 30
    assert (w["min"], w["max"], w["last"], w["count"]) == (0, 48, 28, 10)
    assert w["time"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + 30))


def test_retried_batch_changes_nothing(client):
    t0 = now30() - 300
    body = [cpu([[t0 + 3 * k, float(k % 7)] for k in range(40)], carry=[t0 - 5, 3.0])]
    assert client.samples("h1", body).status_code == 200
    first = points_of(client, "h1", "cpu.percent", t0 - 60, t0 + 300)
    for _ in range(2):
        assert client.samples("h1", body).status_code == 200
    assert points_of(client, "h1", "cpu.percent", t0 - 60, t0 + 300) == first
    assert sum(p["count"] for p in first) == 40


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 2, 0), (2, 0, 1)])
def test_split_window_any_order_equals_one_batch(client, order):
    t0 = now30() - 600
    offs = [0, 2, 5, 6, 7, 10, 14, 20, 25, 28, 31, 47, 95, 140]
    vals = [0, 12, 32, 48, 28, 24, 28, 32, 36, 28, 5, 6, 7, 8]
    pts = [[t0 + o, float(v)] for o, v in zip(offs, vals, strict=True)]
    assert client.samples("whole", [cpu(pts)]).status_code == 200
    cuts = [(0, 4), (4, 11), (11, len(pts))]
    for i in order:
        a, b = cuts[i]
        carry = pts[a - 1] if a else None
        r = client.samples("split", [cpu(pts[a:b], carry=carry)])
        assert r.status_code == 200, r.json
    whole = points_of(client, "whole", "cpu.percent", t0 - 60, t0 + 600)
    split = points_of(client, "split", "cpu.percent", t0 - 60, t0 + 600)
    assert len(whole) == len(split) > 4
    for w, s in zip(whole, split, strict=True):
        assert w.keys() == s.keys()
        for k in w:
            if isinstance(w[k], float):
                assert math.isclose(w[k], s[k], rel_tol=1e-9, abs_tol=1e-9), (k, w, s)
            else:
                assert w[k] == s[k]


def test_held_value_covers_empty_windows_and_carry(client):
    t0 = now30() - 600
    r = client.samples("h60", [cpu([[t0 + 60 * k, float(k)] for k in range(4)])])
    assert r.json == {"accepted": 4, "windows": 7}
    pts = points_of(client, "h60", "cpu.percent", t0, t0 + 600)
    assert [p["count"] for p in pts] == [1, 0, 1, 0, 1, 0, 1]
    assert all(p["covered"] == 30 for p in pts)
    # The next batch's carry extends the newest sample past its own window's end.
    r = client.samples("h60", [cpu([[t0 + 240, 9.0]], carry=[t0 + 180, 3.0])])
    assert r.status_code == 200
    pts = points_of(client, "h60", "cpu.percent", t0 + 210, t0 + 270)
    assert [(p["count"], p["mean"]) for p in pts] == [(0, 3.0), (1, 9.0)]


def test_energy_for_watts(client):
    t0 = now30() - 3600
    pw = cpu(
        [[t0 + 10 * k, 100.0] for k in range(360)],
        unit="W",
        metric="gpu.power.watts",
        tags={"gpu": "0"},
    )
    assert client.samples("gpu-1", [pw, cpu([[t0, 1.0]])]).status_code == 200
    pts = points_of(client, "gpu-1", "gpu.power.watts", t0, t0 + 3600)
    assert pts[0]["energy_wh"] == pytest.approx(100 * 30 / 3600)
    assert "energy_wh" not in points_of(client, "gpu-1", "cpu.percent", t0, t0 + 60)[0]
    r = client.get("/api/v1/energy", query_string={"host": "gpu-1", "start": t0, "end": t0 + 3600})
    assert r.status_code == 200, r.json
    assert r.json["total_wh"] == pytest.approx(100.0)
    assert [s["metric"] for s in r.json["series"]] == ["gpu.power.watts"]


# ---- validation: every bad field named, nothing stored -------------------------------------


def assert_nothing_stored(client):
    assert client.get("/api/v1/hosts").json == []


def test_bad_points_are_all_named_and_nothing_stored(client):
    t0 = now30() - 120
    good = cpu([[t0, 1.0], [t0 + 1, 2.0]])
    bad = cpu(
        [[t0, 1.0], [t0, 2.0], [t0 + 2, True], [t0 + 3, "4"], [t0 + 4, None], "x", [t0 + 6]],
        tags={"cpu": "1"},
    )
    r = client.samples("web-01", [good, bad, {"metric": "Bad Metric", "points": []}])
    assert r.status_code == 400
    d = r.json["details"]
    assert set(d) >= {
        "series.1.points.2",
        "series.1.points.3",
        "series.1.points.4",
        "series.1.points.5",
        "series.1.points.6",
        "series.2.metric",
        "series.2.points",
    }, d
    assert "boolean" in d["series.1.points.2"][0]
    assert r.json["error"]
    assert_nothing_stored(client)


@pytest.mark.parametrize(
    ("points", "path", "word"),
    [
        ([[1, 1.0]], "series.0.points.0", "older"),
        ([["now+600", 1.0]], "series.0.points.0", "future"),
        ([["t", 1.0], ["t", 2.0]], "series.0.points.1", "strictly"),
        ([["t+1", 1.0], ["t", 2.0]], "series.0.points.1", "strictly"),
        ([["2026-13-01T00:00:00Z", 1.0]], "series.0.points.0", "RFC 3339"),
        ([["2026-11-23T00:00:00", 1.0]], "series.0.points.0", "RFC 3339"),
        ([["t", "1.5"]], "series.0.points.0", "string"),
        ([["t", [1]]], "series.0.points.0", "list"),
    ],
)
def test_point_errors(client, points, path, word):
    t = now30()
    fix = {"t": t, "t+1": t + 1, "now+600": time.time() + 600}
    pts = [[fix.get(p[0], p[0]) if isinstance(p[0], str) else p[0], p[1]] for p in points]
    body = orjson.dumps({"host": "h", "series": [cpu(pts)]}, option=orjson.OPT_SERIALIZE_NUMPY)
    r = client.c.post(
        "/api/v1/samples",
        data=body,
        headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
    )
    assert r.status_code == 400, r.json
    assert path in r.json["details"], r.json
    assert word in " ".join(r.json["details"][path]), r.json
    assert_nothing_stored(client)


def test_rfc3339_timestamps_accepted(client):
    t0 = now30() - 60
    iso = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(t0))
    r = client.samples("iso", [cpu([[iso, 1.0], [t0 + 10, 2.0]])])
    assert r.status_code == 200, r.json
    assert points_of(client, "iso", "cpu.percent", t0, t0 + 30)[0]["count"] == 2


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"series": []}, "host"),
        ({"host": "bad host!", "series": [cpu([[0, 1]])]}, "host"),
        ({"host": "h", "series": []}, "series"),
        ({"host": "h", "series": [cpu([["t", 1]], tags={"Bad": "x"})]}, "series.0.tags"),
        ({"host": "h", "series": [cpu([["t", 1]], tags={"host": "x"})]}, "series.0.tags"),
        (
            {"host": "h", "series": [cpu([["t", 1]], tags={f"k{i}": "v" for i in range(9)})]},
            "series.0.tags",
        ),
        ({"host": "h", "series": [cpu([["t", 1]], tags={"k": "a\nb"})]}, "series.0.tags"),
        ({"host": "h", "series": [cpu([["t", 1]], unit="x" * 33)]}, "series.0.unit"),
        ({"host": "h", "series": [cpu([["t", 1]], carry=["t", 1])]}, "series.0.carry"),
        ({"host": "h", "series": [cpu([["t", 1]], carry=[1, True])]}, "series.0.carry"),
        ({"host": "h", "series": [cpu([["t", 1]]), cpu([["t", 1]])]}, "series.1"),
        ({"host": "h", "series": [{**cpu([["t", 1]]), "extra": 1}]}, "series.0.extra"),
        ({"host": "h", "series": [cpu([])]}, "series.0.points"),
    ],
)
def test_envelope_errors_name_the_field(client, body, path):
    t = now30()
    raw = orjson.dumps(body).replace(b'"t"', str(t).encode())
    r = client.c.post(
        "/api/v1/samples",
        data=raw,
        headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
    )
    assert r.status_code == 400, r.json
    assert any(k.startswith(path) for k in r.json["details"]), r.json
    assert_nothing_stored(client)


def test_body_encodings_and_limits(client, app):
    t0 = now30()
    body = orjson.dumps({"host": "gz", "series": [cpu([[t0, 1.0]])]})
    hdr = {"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"}
    r = client.c.post(
        "/api/v1/samples", data=gzip.compress(body), headers={**hdr, "Content-Encoding": "gzip"}
    )
    assert r.status_code == 200, r.json
    r = client.c.post(
        "/api/v1/samples", data=b"\x1f\x8bnot gzip", headers={**hdr, "Content-Encoding": "gzip"}
    )
    assert r.status_code == 400
    r = client.c.post("/api/v1/samples", data=body, headers={**hdr, "Content-Encoding": "br"})
    assert r.status_code == 400 and "Content-Encoding" in r.json["details"]
    limit = app.config["FLEETPULSE"].max_body_bytes
    bomb = gzip.compress(b"[" + b" " * (limit + 10) + b"]")
    assert len(bomb) < 100_000
    r = client.c.post("/api/v1/samples", data=bomb, headers={**hdr, "Content-Encoding": "gzip"})
    assert r.status_code == 413 and r.json["error"]
    r = client.c.post("/api/v1/samples", data=b" " * (limit + 1), headers=hdr)
    assert r.status_code == 413 and "error" in r.json
    r = client.c.post("/api/v1/samples", data=body, headers={**hdr, "Content-Type": "text/plain"})
    assert r.status_code == 415 and "error" in r.json
    r = client.c.post("/api/v1/samples", data=b"{nope", headers=hdr)
    assert r.status_code == 400 and "_body" in r.json["details"]
    for lit in (b"NaN", b"Infinity", b"1e400", b"-1e999"):
        raw = b'{"host":"h","series":[{"metric":"m","points":[[%d,%s]]}]}' % (t0, lit)
        r = client.c.post("/api/v1/samples", data=raw, headers=hdr)
        assert r.status_code == 400 and "_body" in r.json["details"], lit
    assert [h["host"] for h in client.get("/api/v1/hosts").json] == ["gz"]


# ---- reads -------------------------------------------------------------------------------


@pytest.fixture
def filled(client):
    t0 = now30() - 1800
    series = [
        cpu([[t0 + 10 * k, float(k)] for k in range(180)]),
        cpu([[t0 + 10 * k, 50.0] for k in range(180)], tags={"cpu": "0"}),
    ]
    assert client.samples("r1", series).status_code == 200
    return t0


def test_series_range_edges(client, filled):
    t0 = filled
    pts = points_of(client, "r1", "cpu.percent", t0 + 30, t0 + 90, **{"tag.cpu": "total"})
    # labels in (start, end]: t0+30 excluded, t0+60 and t0+90 included
    assert [p["time"] for p in pts] == [
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + x)) for x in (60, 90)
    ]
    r = client.series("r1", "cpu.percent", t0, t0 + 1800)
    assert r.json["resolution"] == "30s"
    assert len(r.json["series"]) == 2
    assert r.json["start"].endswith("Z") and r.json["end"].endswith("Z")
    r = client.series("r1", "cpu.percent", t0, t0 + 60, **{"tag.cpu": "0"})
    assert [s["tags"] for s in r.json["series"]] == [{"cpu": "0"}]
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0))
    r = client.series("r1", "cpu.percent", iso, t0 + 60)
    assert r.status_code == 200 and len(r.json["series"][0]["points"]) == 2


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": None}, "start"),
        ({"end": None}, "end"),
        ({"start": "yesterday"}, "start"),
        ({"end": "2026-11-23"}, "end"),
        ({"start": "200", "end": "100"}, "start"),
        ({"start": "100", "end": "100"}, "start"),
        ({"resolution": "45s"}, "resolution"),  # 5m is valid now: 45 s is no multiple of 30
        ({"start": "0", "end": str(30 * 10_001), "resolution": "30s"}, "end"),
        ({"start": "0", "end": str(1800 * 10_001), "resolution": "30m"}, "end"),
        ({"metric": None}, "metric"),
        ({"host": None}, "host"),
        ({"bogus": "1"}, "bogus"),
    ],
)
def test_series_bad_params(client, params, field):
    q = {"host": "r1", "metric": "cpu.percent", "start": "100", "end": "200"}
    q.update(params)
    q = {k: v for k, v in q.items() if v is not None}
    r = client.get("/api/v1/series", query_string=q)
    assert r.status_code == 400, r.json
    assert field in r.json["details"], r.json
    assert r.json["error"]


def test_auto_resolution_and_empty_ranges(client, filled):
    t0 = filled
    assert client.series("r1", "cpu.percent", 0, 30 * 2880).json["resolution"] == "30s"
    assert client.series("r1", "cpu.percent", 0, 30 * 2881).json["resolution"] == "30m"
    # no data: 200 with empty points (beyond retention, in the future, unknown metric)
    for start, end in ((1000, 2000), (t0 + 86400, t0 + 90000)):
        r = client.series("r1", "cpu.percent", start, end)
        assert r.status_code == 200 and all(s["points"] == [] for s in r.json["series"])
    r = client.series("r1", "no.such.metric", t0, t0 + 60)
    assert r.status_code == 200 and r.json["series"] == []


def test_hosts_and_state_table(client, filled):
    r = client.get("/api/v1/hosts")
    assert r.status_code == 200
    (h,) = r.json
    assert h["host"] == "r1" and h["series"] == 2 and h["last_seen"].endswith("Z")
    r = client.get("/api/v1/hosts/r1")
    assert r.status_code == 200
    state = r.json
    vals = {s["tags"]["cpu"]: s["value"] for s in state["series"]}
    assert vals == {"total": 179.0, "0": 50.0}
    assert state["last_seen"] == h["last_seen"]
    r = client.get("/api/v1/hosts/nobody")
    assert r.status_code == 404 and r.json["error"]
    # an older retry never moves the state table back
    assert client.samples("r1", [cpu([[filled, -1.0]])]).status_code == 200
    assert client.get("/api/v1/hosts/r1").json == state


def test_a_changed_unit_is_stored_at_once(client):
    """The registry caches series ids per worker; a unit that changes must still be written."""
    t0 = now30()
    for unit in ("W", "mW", "W"):
        r = client.samples("u1", [cpu([[t0 + 1, 5.0]], unit=unit, metric="psu.power")])
        assert r.status_code == 200, r.json
        state = client.get("/api/v1/hosts/u1")
        assert state.status_code == 200, state.json
        (s,) = state.json["series"]
        assert s["unit"] == unit
        got = client.series("u1", "psu.power", t0 - 30, t0 + 30)
        assert got.status_code == 200, got.json
        assert [x["unit"] for x in got.json["series"]] == [unit], got.json


def test_downsampled_30m_series(client, app):
    t0 = (int(time.time()) // 1800 - 2) * 1800
    pts = [[t0 + 10 * k, float(k % 10)] for k in range(360)]
    assert client.samples("ds", [cpu(pts, unit="W")]).status_code == 200
    store = app.extensions["fleetpulse"].store
    store.run_jobs(time.time())
    r = client.series("ds", "cpu.percent", t0, t0 + 3600, resolution="30m")
    assert r.status_code == 200, r.json
    w30 = points_of(client, "ds", "cpu.percent", t0, t0 + 1800)
    (p, _p2) = r.json["series"][0]["points"]
    integral = sum(w["mean"] * w["covered"] for w in w30)
    covered = sum(w["covered"] for w in w30)
    assert p["time"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + 1800))
    assert p["mean"] == pytest.approx(integral / covered)
    assert p["count"] == 180 and p["covered"] == pytest.approx(covered)
    assert p["energy_wh"] == pytest.approx(sum(w["energy_wh"] for w in w30))
    assert (p["min"], p["max"], p["last"]) == (0, 9, w30[-1]["last"])


# ---- auth ----------------------------------------------------------------------------------


def test_auth_rules(client):
    t0 = now30()
    agent = client.token_for("agent", "web-01")
    reader = client.token_for("reader")
    body = [cpu([[t0, 1.0]])]
    assert client.samples("web-01", body, token=None).status_code == 401
    assert client.samples("web-01", body, token="nope").status_code == 401
    assert client.samples("web-02", body, token=agent).status_code == 403
    assert client.samples("web-01", body, token=reader).status_code == 403
    assert client.samples("web-01", body, token=agent).status_code == 200
    assert client.get("/api/v1/hosts", token=agent).status_code == 403
    assert client.get("/api/v1/hosts", token=reader).status_code == 200
    assert client.post("/api/v1/tokens", {"role": "reader"}, token=reader).status_code == 403
    for path in ("/healthz", "/readyz", "/api/v1/openapi.json"):
        assert client.get(path, token=None).status_code == 200
    r = client.get("/api/v1/hosts", token=None)
    assert r.status_code == 401 and r.json["error"] and "details" in r.json


def test_tokens_lifecycle_and_hashing(client, app):
    r = client.post("/api/v1/tokens", {"role": "agent", "host": "db-1"})
    assert r.status_code == 201
    tok = r.json
    assert set(tok) >= {"id", "token", "role", "host"} and tok["role"] == "agent"
    listed = client.get("/api/v1/tokens").json
    assert [t["id"] for t in listed] == [tok["id"]]
    assert "token" not in listed[0] and tok["token"] not in orjson.dumps(listed).decode()
    path = app.extensions["fleetpulse"].meta.db.path
    with sqlite3.connect(path) as con:
        dump = "\n".join(con.iterdump())
    assert tok["token"] not in dump
    assert client.samples("db-1", [cpu([[now30(), 1.0]])], token=tok["token"]).status_code == 200
    assert client.delete(f"/api/v1/tokens/{tok['id']}").status_code == 204
    assert client.samples("db-1", [cpu([[now30(), 1.0]])], token=tok["token"]).status_code == 401
    assert client.delete(f"/api/v1/tokens/{tok['id']}").status_code == 404
    for bad in ({"role": "agent"}, {"role": "reader", "host": "x"}, {"role": "root"}, {}):
        r = client.post("/api/v1/tokens", bad)
        assert r.status_code == 400 and r.json["details"], (bad, r.json)


def test_openapi_and_error_shape(client):
    spec = client.get("/api/v1/openapi.json", token=None).json
    assert spec["openapi"].startswith("3.")
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for p in (
        "/api/v1/samples",
        "/api/v1/series",
        "/api/v1/hosts",
        "/api/v1/hosts/{host}",
        "/api/v1/energy",
        "/api/v1/tokens",
    ):
        assert p in spec["paths"], p
    assert "SamplesIn" in spec["components"]["schemas"]
    for r in (client.get("/nope"), client.c.put("/api/v1/samples")):
        assert set(r.json) == {"error", "details"}, r.json
    assert client.c.put("/api/v1/samples").status_code == 405
