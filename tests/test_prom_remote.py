"""Prometheus remote write 1.0 through the Flask app on both stores (contract section 8.2)."""

from __future__ import annotations

import itertools
import math
import struct

import cramjam
import pytest

from app.ingest.prom_remote import host_of_instance, snappy_length
from app.ingest.senders import metric_name, tag_key
from tests.conftest import ADMIN, now30, unique_host
from tests.sender_helpers import PROM_HEADERS, basic, write_request

STALE = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]


def post(client, body: bytes, token: str = ADMIN, auth: str | None = None, **headers):
    h = {**PROM_HEADERS, "Authorization": auth or f"Bearer {token}", **headers}
    return client.c.post("/api/v1/prom/write", data=body, headers=h)


def points(client, host, metric, start, end, **tags):
    q = {f"tag.{k}": v for k, v in tags.items()}
    r = client.series(host, metric, start, end, resolution="30s", **q)
    assert r.status_code == 200, r.json
    return r.json["series"]


def test_names_and_hosts() -> None:
    assert metric_name("Foo:Bar-baz") == "foo_bar_baz" and tag_key("http.Method") == "http_method"
    assert host_of_instance("web-01:9100") == "web-01"
    assert host_of_instance("[::1]:9100") == "::1" and host_of_instance("db") == "db"
    assert snappy_length(bytes(cramjam.snappy.compress_raw(b"x" * 300))) == 300


def test_gauges_are_stored_with_host_from_instance_and_tags(client) -> None:
    host, t0 = unique_host(), now30()
    labels = {"__name__": "node_memory_MemTotal_bytes", "instance": f"{host}:9100", "job": "node"}
    r = post(client, write_request([(labels, [(t0 + 10, 100.0), (t0 + 20, 200.0)])]))
    assert r.status_code == 204, r.data
    (s,) = points(client, host, "node_memory_memtotal_bytes", t0, t0 + 30)
    assert s["tags"] == {"job": "node"} and s["unit"] == "bytes"
    assert s["points"][0]["mean"] == pytest.approx(150.0) and s["points"][0]["count"] == 2


def test_counter_integral_is_exact_across_requests_with_a_reset_and_resends(client) -> None:
    """Joules counter -> W rate: watt-hours over the span = the increase / 3600, exactly."""
    host, t0 = unique_host(), now30() - 120
    seq = [
        (t0 + 10 * i, v)
        for i, v in enumerate([0, 50, 150, 30, 90, 100, 400, 10, 70, 80, 100, 130, 200])
    ]
    labels = {"__name__": "rapl_joules_total", "host": host, "zone": "pkg"}
    for chunk in (seq[:4], seq[2:8], seq[8:], seq[5:9]):  # overlapping resends too
        assert post(client, write_request([(labels, chunk)])).status_code == 204
    increase = sum(b if b < a else b - a for (_, a), (_, b) in itertools.pairwise(seq))
    (s,) = points(client, host, "rapl_joules_total.rate", t0, t0 + 120)
    assert s["unit"] == "W"
    integral = sum(p["mean"] * p["covered"] for p in s["points"])
    assert integral == pytest.approx(increase, rel=1e-9)
    r = client.get("/api/v1/energy", query_string={"host": host, "start": t0, "end": t0 + 120})
    assert r.json["total_wh"] == pytest.approx(increase / 3600, rel=1e-9)


def test_typed_counter_metadata_and_stale_markers(client) -> None:
    host, t0 = unique_host(), now30()
    c = {"__name__": "requests", "instance": f"{host}:80"}
    g = {"__name__": "temp", "instance": f"{host}:80"}
    body = write_request(
        [(c, [(t0, 0.0), (t0 + 10, 20.0)]), (g, [(t0 + 5, 3.0), (t0 + 15, STALE)])],
        counters=["requests"],
    )
    assert post(client, body).status_code == 204
    (s,) = points(client, host, "requests.rate", t0, t0 + 30)
    assert s["points"][0]["mean"] == pytest.approx(2.0)
    (s,) = points(client, host, "temp", t0, t0 + 30)
    assert s["points"][0]["count"] == 1  # the stale marker is no sample


def test_metadata_types_a_series_seen_before_as_a_gauge(client) -> None:
    """The decoder remembers label sets, but never past what a request's metadata says."""
    host, t0 = unique_host(), now30()
    c = {"__name__": "hits", "host": host}
    assert post(client, write_request([(c, [(t0, 5.0)])])).status_code == 204
    body = write_request([(c, [(t0 + 10, 0.0), (t0 + 20, 30.0)])], counters=["hits"])
    assert post(client, body).status_code == 204
    (s,) = points(client, host, "hits.rate", t0, t0 + 30)
    assert s["points"][0]["max"] == pytest.approx(3.0)


def test_refused_series_are_named_and_the_rest_stored(client) -> None:
    host, t0 = unique_host(), now30()
    many = {"__name__": "wide", "host": host, **{f"l{i}": "x" for i in range(9)}}
    clash = {"__name__": "clash", "host": host, "A": "1", "a": "2"}
    ok = {"__name__": "fine", "host": host}
    old = {"__name__": "old", "host": host}
    series = [(many, [(t0, 1.0)]), (clash, [(t0, 1.0)]), (ok, [(t0, 1.0)]), (old, [(1.0, 1.0)])]
    r = post(client, write_request(series))
    assert r.status_code == 400 and set(r.json) == {"error", "details"}
    text = r.json["error"]
    assert "wide{" in text and "9 tags" in text and "clash{" in text and "'A' and 'a'" in text
    assert "old{" in text and "fine" not in text
    assert points(client, host, "fine", t0 - 30, t0 + 30)


def test_out_of_order_and_duplicate_samples_sorted_last_wins(client) -> None:
    host, t0 = unique_host(), now30()
    g = {"__name__": "g", "host": host}
    assert (
        post(client, write_request([(g, [(t0 + 20, 5.0), (t0, 1.0), (t0, 3.0)])])).status_code
        == 204
    )
    (s,) = points(client, host, "g", t0, t0 + 30)
    assert s["points"][0]["min"] == 3.0 and s["points"][0]["count"] == 2


def test_auth_schemes_and_agent_tokens(client) -> None:
    host, t0 = unique_host(), now30()
    agent = client.token_for("agent", host)
    mine = write_request([({"__name__": "m"}, [(t0, 1.0)])])  # no host: the token's
    assert post(client, mine, auth=basic(agent)).status_code == 204
    assert post(client, mine, auth=f"Token {agent}").status_code == 204
    assert points(client, host, "m", t0 - 30, t0 + 30)
    other = write_request(
        [({"__name__": "m", "host": "other"}, [(t0, 1.0)]), ({"__name__": "n"}, [(t0, 1.0)])]
    )
    assert post(client, other, token=agent).status_code == 403
    assert not points(client, host, "n", t0 - 30, t0 + 30)
    assert post(client, mine, auth="Basic !!").status_code == 401


def test_headers_and_bodies_refused(client) -> None:
    body = write_request([({"__name__": "m", "host": "h"}, [(now30(), 1.0)])])
    assert post(client, body, **{"Content-Encoding": "gzip"}).status_code == 415
    v2 = "application/x-protobuf;proto=io.prometheus.write.v2.Request"
    assert post(client, body, **{"Content-Type": v2}).status_code == 415
    assert post(client, b"\xff\xff\xff\xff\x0f").status_code == 413  # announces 4 GiB
    assert post(client, b"\x05garbage").status_code == 400
    assert math.isnan(STALE)


def test_storage_down_is_503_with_retry_after(client, monkeypatch) -> None:
    from app.core.errors import StorageUnavailable

    def down(*a, **k):
        raise StorageUnavailable("down")

    monkeypatch.setattr(client.c.application.extensions["fleetpulse"].store, "write", down)
    r = post(client, write_request([({"__name__": "m", "host": "h"}, [(now30(), 1.0)])]))
    assert r.status_code == 503 and r.headers["Retry-After"]


def test_token_from_request_every_place(app) -> None:
    from app.web.auth import token_from_request

    cases = [
        ({"Authorization": "Bearer abc"}, "", False, "abc"),
        ({"Authorization": "Token abc"}, "", False, "abc"),
        ({"Authorization": basic("abc")}, "", False, "abc"),
        ({"Authorization": "Basic " + "Og=="}, "", False, None),  # ":" (no password)
        ({}, "p=abc", True, "abc"),
        ({}, "p=abc", False, None),
        ({"Authorization": "Digest x"}, "", False, None),
    ]
    for headers, query, allow, want in cases:
        with app.test_request_context("/write", headers=headers, query_string=query):
            from flask import request

            assert token_from_request(request, allow_query_p=allow) == want, (headers, query)


@pytest.mark.e2e
def test_racing_resends_through_two_workers_keep_the_integral_exact(live_api) -> None:
    """Each batch sent twice at once (two gunicorn workers): the counter's kept raw sample is
    read and updated under the host's write section, so the rates stay exact."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    host, t0 = unique_host(), now30() - 150
    vals = [0, 40, 100, 20, 60, 200, 210, 5, 45, 90, 150, 400, 420, 430, 500, 510]
    seq = [(t0 + 10 * i, float(v)) for i, v in enumerate(vals)]
    labels = {"__name__": "work_total", "host": host}
    url, auth = live_api.url + "/api/v1/prom/write", {"Authorization": f"Bearer {ADMIN}"}
    with ThreadPoolExecutor(4) as pool:
        for lo in range(0, len(seq), 3):
            body = write_request([(labels, seq[max(0, lo - 1) : lo + 3])])
            codes = pool.map(
                lambda b: requests.post(url, data=b, headers={**PROM_HEADERS, **auth}, timeout=30),
                [body, body, body],
            )
            assert [r.status_code for r in codes] == [204, 204, 204]
    end = seq[-1][0]
    q = {"host": host, "metric": "work_total.rate", "start": t0, "end": end, "resolution": "30s"}
    r = live_api.request("GET", "/api/v1/series", ADMIN, params=q)
    (s,) = r.json()["series"]
    increase = sum(b if b < a else b - a for (_, a), (_, b) in itertools.pairwise(seq))
    assert sum(p["mean"] * p["covered"] for p in s["points"]) == pytest.approx(increase, rel=1e-9)
