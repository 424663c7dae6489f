"""The line protocol endpoints (app/web/views/influx.py) on both stores, and the official
InfluxDB clients (1.x ``influxdb``, 2.x ``influxdb-client``) against a real gunicorn."""

from __future__ import annotations

import base64
import gzip
import os
import shutil
import subprocess
import time

import pytest

from app.core.errors import StorageUnavailable
from tests.conftest import ADMIN, now30


def write(client, body: str | bytes, token: str | None = ADMIN, path: str = "/write", **kw):
    data = body.encode() if isinstance(body, str) else body
    headers = kw.pop("headers", {})
    if token is not None:
        headers.setdefault("Authorization", f"Token {token}")
    return client.c.post(path, data=data, headers=headers, **kw)


def windows(client, host: str, metric: str, t0: int, tags: dict | None = None) -> list:
    q = {f"tag.{k}": v for k, v in (tags or {}).items()}
    r = client.series(host, metric, t0 - 120, t0 + 240, resolution="30s", **q)
    assert r.status_code == 200, r.json
    return [p for s in r.json["series"] for p in s["points"]]


def test_lines_give_the_windows_the_json_path_gives(client):
    t0 = now30() - 120
    pts = [(t0 + 7 * k, float(k % 5)) for k in range(25)]
    lines = "\n".join(f"cpu,host=lp,cpu=cpu-total usage_idle={v} {t}" for t, v in pts)
    r = write(client, lines, path="/api/v2/write?org=o&bucket=b&precision=s")
    assert r.status_code == 204, r.get_data()
    series = [{"metric": "cpu.usage_idle", "tags": {"cpu": "cpu-total"}, "points": pts}]
    assert client.samples("js", series).status_code == 200
    got = windows(client, "lp", "cpu.usage_idle", t0)
    assert got and got == windows(client, "js", "cpu.usage_idle", t0)


def test_in_order_batches_without_carry_equal_one_batch(client):
    """Contract section 4's property through this path: the server carries between batches."""
    t0 = now30() - 180
    pts = [(t0 + 4 * k + (k % 3), float((k * 7) % 11)) for k in range(40)]
    for a, b in ((0, 9), (9, 10), (10, 27), (27, 40)):
        body = "\n".join(f"m,host=split v={v} {t}" for t, v in pts[a:b])
        assert write(client, body, path="/write?precision=s").status_code == 204
    whole = "\n".join(f"m,host=whole v={v} {t * 1000}" for t, v in pts)
    assert write(client, gzip.compress(whole.encode()), path="/write?precision=ms",
                 headers={"Content-Encoding": "gzip"}).status_code == 204  # fmt: skip
    split, one = windows(client, "split", "m.v", t0), windows(client, "whole", "m.v", t0)
    assert len(one) >= 6
    assert [p["time"] for p in split] == [p["time"] for p in one]
    for p, q in zip(split, one, strict=True):
        for f in ("mean", "min", "max", "last", "count", "covered"):
            assert p[f] == pytest.approx(q[f], rel=1e-9), (f, p, q)


def test_partial_write_stores_the_good_lines(client):
    t0 = now30()
    body = f"m,host=pw a=1 {t0}\nnot line protocol\nm,host=pw b=2 {t0}\nm,host=pw c=1 1\n"
    r = write(client, body, path="/write?precision=s")
    assert r.status_code == 400
    assert set(r.json) == {"code", "message", "error", "details"}
    assert r.json["code"] == "invalid" and r.json["message"] == r.json["error"]
    assert r.json["message"].startswith("partial write: line 2: unable to parse")
    assert r.json["message"].endswith("dropped=2") and "line 4" in r.json["message"]
    assert list(r.json["details"]) == ["lines.2", "lines.4"]
    assert windows(client, "pw", "m.a", t0) and windows(client, "pw", "m.b", t0)
    assert write(client, "# only comments\n\n", path="/write").status_code == 204


def test_auth_forms_and_roles(client):
    agent = client.token_for("agent", "ag")
    line = f"m f=1 {now30()}"
    basic = base64.b64encode(f"anyone:{agent}".encode()).decode()
    for path, headers in [
        ("/write?precision=s", {"Authorization": f"Bearer {agent}"}),
        ("/write?precision=s", {"Authorization": f"Token {agent}"}),
        ("/write?precision=s", {"Authorization": f"Basic {basic}"}),
        (f"/write?precision=s&u=x&p={agent}", {}),
        ("/api/v2/write?precision=s", {"Authorization": f"Token {agent}"}),
    ]:
        assert write(client, line, None, path, headers=headers).status_code == 204, path
    assert write(client, line, None, f"/api/v2/write?precision=s&p={agent}").status_code == 401
    assert write(client, line, None, "/write").status_code == 401
    assert write(client, line, "nope", "/write").status_code == 401
    for role in ("reader", "enroll"):
        assert write(client, line, client.token_for(role), "/write").status_code == 403
    # another host anywhere in the body: 403, nothing stored
    t0 = now30()
    body = f"m,host=ag g=1 {t0}\nm,host=other g=1 {t0}"
    r = write(client, body, agent, "/write?precision=s")
    assert r.status_code == 403 and r.json["code"] == "forbidden"
    assert windows(client, "ag", "m.g", t0) == []
    r = write(client, f"m g=1 {t0}", ADMIN, "/write?precision=s")  # admin, no host tag
    assert r.status_code == 400 and "no host tag" in r.json["message"]


def test_limits_and_encodings(client, app):
    limit = app.config["FLEETPULSE"].max_body_bytes
    assert write(client, "m,host=x f=1\n" * (limit // 12 + 1)).status_code == 413
    bomb = gzip.compress(b"\\" * (limit + 10))
    r = write(client, bomb, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 413 and r.json["code"] == "request too large"
    assert write(client, b"xx", headers={"Content-Encoding": "gzip"}).status_code == 400
    r = write(client, "m,host=x f=1", path="/api/v2/write?precision=u")
    assert r.status_code == 400 and "precision" in r.json["details"]


def test_ping_and_query(client):
    for method in (client.c.get, client.c.head):
        r = method("/ping")
        assert r.status_code == 204 and r.headers["X-Influxdb-Version"]
    agent = client.token_for("agent", "q")
    hdr = {"Authorization": f"Token {agent}"}
    r = client.c.post("/query", data={"q": 'CREATE DATABASE "telegraf"'}, headers=hdr)
    assert r.status_code == 200 and r.json == {"results": [{"statement_id": 0}]}
    r = client.c.get(f"/query?q=create+database+x&p={agent}")
    assert r.status_code == 200
    r = client.c.get("/query?q=SHOW+DATABASES&db=glances", headers=hdr)
    assert r.json["results"][0]["series"][0]["values"] == [["glances"]]
    r = client.c.get("/query?q=SELECT+*+FROM+cpu", headers=hdr)
    assert r.status_code == 400 and "CREATE DATABASE" in r.json["error"]
    assert client.c.get("/query?q=CREATE+DATABASE+x").status_code == 401


def test_storage_down_is_503_with_retry_after(client, app, monkeypatch):
    def down(batch):
        raise StorageUnavailable("influxd is not answering")

    monkeypatch.setattr(app.extensions["fleetpulse"].store, "write", down)
    r = write(client, f"m,host=x f=1 {now30()}", path="/write?precision=s")
    assert r.status_code == 503 and r.headers["Retry-After"]
    assert r.json["code"] == "unavailable"


@pytest.mark.e2e
def test_official_clients_through_gunicorn(live_api_any):
    live_api = live_api_any
    """influxdb-client (2.x API, Token, gzip on and off) and influxdb 1.x (/write, Basic auth
    and u/p parameters, create_database at start) write; the windows match the JSON path's."""
    from influxdb import InfluxDBClient
    from influxdb_client import InfluxDBClient as Client2
    from influxdb_client import Point, WritePrecision
    from influxdb_client.client.write_api import SYNCHRONOUS

    t0 = now30() - 120
    pts = [(t0 + 5 * k, float(k % 4)) for k in range(30)]
    js = [{"metric": "sys.load", "tags": {"core": "0"}, "points": pts}]
    assert live_api.post_samples(live_api.token_for("agent", "js"), "js", js).status_code == 200
    for host, gz in (("v2plain", False), ("v2gzip", True)):
        token = live_api.token_for("agent", host)
        with Client2(url=live_api.url, token=token, org="any", enable_gzip=gz) as c:
            assert c.ping()
            points = [Point("sys").tag("core", "0").field("load", v).time(t, WritePrecision.S)
                      for t, v in pts]  # fmt: skip
            c.write_api(write_options=SYNCHRONOUS).write("any", "any", points, WritePrecision.S)
    for host, by_params in (("v1basic", False), ("v1params", True)):
        token = live_api.token_for("agent", host)
        c = InfluxDBClient("127.0.0.1", live_api.port, "telegraf", token, "anydb", gzip=True)
        if by_params:
            c._session.auth = None
            c._username = c._password = None
            c._session.params = {"u": "telegraf", "p": token}
        c.create_database("anydb")
        body = [{"measurement": "sys", "tags": {"core": "0", "host": host}, "time": t,
                 "fields": {"load": v}} for t, v in pts]  # fmt: skip
        assert c.write_points(body, time_precision="s")
        assert c.ping()
    reader = live_api.token_for("reader")
    q = {"metric": "sys.load", "start": t0 - 60, "end": t0 + 240, "resolution": "30s"}
    answers = {}
    for host in ("js", "v2plain", "v2gzip", "v1basic", "v1params"):
        r = live_api.request("GET", "/api/v1/series", reader, params={**q, "host": host})
        answers[host] = r.json()["series"][0]["points"]
    assert len(answers["js"]) >= 5
    assert all(a == answers["js"] for a in answers.values())


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("glances") is None, reason="Debian's glances is not installed")
def test_glances_exports_through_write(live_api, tmp_path):
    """Debian's Glances (its InfluxDB 1.x export: SHOW DATABASES, then lines without
    timestamps) sends three rounds; its CPU and memory figures are stored as windows."""
    token = live_api.token_for("agent", "glances-host")
    conf = tmp_path / "glances.conf"
    conf.write_text(
        f"[influxdb]\nhost=127.0.0.1\nport={live_api.port}\nprotocol=http\nuser=glances\n"
        f"password={token}\ndb=glances\n"
    )
    run = subprocess.run(
        ["glances", "-C", str(conf), "--export", "influxdb", "--quiet", "--stop-after", "3",
         "-t", "1", "--disable-plugin", "sensors,docker,processlist,ports"],
        capture_output=True, text=True, timeout=90, env={**os.environ, "HOME": str(tmp_path)},
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    reader = live_api.token_for("reader")
    now = time.time()
    got = {}
    for metric in ("cpu.total", "mem.percent"):
        params = {"host": "glances-host", "metric": metric, "start": now - 600, "end": now + 60}
        r = live_api.request("GET", "/api/v1/series", reader, params=params)
        assert r.status_code == 200, r.text
        got[metric] = [p for s in r.json()["series"] for p in s["points"]]
    for metric, points in got.items():
        assert points, (metric, run.stdout[-2000:])
        assert all(0 <= p["mean"] <= 100 and p["covered"] > 0 for p in points), points


def test_a_timestamp_in_another_precision_is_named(client):
    """The usual mistake: seconds sent with the default precision (ns)."""
    now = int(time.time())
    r = client.c.post(
        "/api/v2/write", data=f"m,host=h f=1 {now}", headers={"Authorization": f"Token {ADMIN}"}
    )
    assert r.status_code == 400
    assert "it looks like s: add ?precision=s" in r.json["message"]
