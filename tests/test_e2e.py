"""End to end: a real gunicorn with 2 workers, real HTTP, concurrent writers."""

from __future__ import annotations

import math
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import now30

pytestmark = pytest.mark.e2e


def series(t0: int, n: int, metric: str = "cpu.percent", tags=None, carry=None) -> dict:
    s = {
        "metric": metric,
        "tags": tags or {"cpu": "total"},
        "unit": "percent",
        "points": [[t0 + k, float(k % 13)] for k in range(n)],
    }
    if carry:
        s["carry"] = carry
    return s


def read(api, token, host, metric, start, end):
    r = api.request(
        "GET",
        "/api/v1/series",
        token,
        params={"host": host, "metric": metric, "start": start, "end": end},
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_worked_example_retry_and_split_over_http(live_api):
    reader = live_api.token_for("reader")
    t0 = now30() - 300
    offs = [0, 2, 5, 6, 7, 10, 14, 20, 25, 28]
    vals = [0, 12, 32, 48, 28, 24, 28, 32, 36, 28]
    pts = [[t0 + o, float(v)] for o, v in zip(offs, vals, strict=True)] + [[t0 + 30, 28.0]]
    tok = live_api.token_for("agent", "gold")
    s = {"metric": "mem.used.bytes", "unit": "B", "points": pts}
    for _ in range(2):  # the retry stores the same points
        r = live_api.post_samples(tok, "gold", [s])
        assert r.status_code == 200 and r.json() == {"accepted": 11, "windows": 2}
    (w, _) = read(live_api, reader, "gold", "mem.used.bytes", t0, t0 + 60)["series"][0]["points"]
    assert w["mean"] == pytest.approx(788 / 30, rel=1e-12) and w["covered"] == 30
    assert w["count"] == 10
    # the same samples split in three batches, sent in reverse order, on another host
    tok2 = live_api.token_for("agent", "gold-split")
    for a, b in ((7, 11), (3, 7), (0, 3)):
        part = {"metric": "mem.used.bytes", "unit": "B", "points": pts[a:b]}
        if a:
            part["carry"] = pts[a - 1]
        assert live_api.post_samples(tok2, "gold-split", [part], gz=False).status_code == 200
    (w2, _) = read(live_api, reader, "gold-split", "mem.used.bytes", t0, t0 + 60)["series"][0][
        "points"
    ]
    assert w2 == pytest.approx(w)


def test_concurrent_writers_on_two_workers(live_api):
    """Many hosts writing at once through 2 workers: every sample lands, once."""
    t0 = now30() - 900
    hosts = [f"c-{i:02d}" for i in range(12)]
    tokens = {h: live_api.token_for("agent", h) for h in hosts}

    def send(h: str) -> list[int]:
        codes = []
        for b in range(6):  # 6 consecutive 30-s batches per host, each with its carry
            carry = [t0 + 30 * b - 1, float((30 * b - 1) % 13)] if b else None
            body = [series(t0 + 30 * b, 30, tags={"cpu": str(c)}, carry=carry) for c in range(8)]
            for s in body:
                s["points"] = [[t0 + 30 * b + k, float((30 * b + k) % 13)] for k in range(30)]
            codes.append(live_api.post_samples(tokens[h], h, body).status_code)
        return codes

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(send, hosts))
    assert all(c == 200 for codes in results for c in codes), results

    con = sqlite3.connect(live_api.db_path)
    total = con.execute("SELECT SUM(count), COUNT(*) FROM w30").fetchone()
    assert total == (12 * 8 * 6 * 30, 12 * 8 * 6)
    # every window equals what one batch would give: held values, fully covered
    assert con.execute("SELECT MIN(covered), MAX(covered) FROM w30").fetchone() == (30.0, 30.0)
    reader = live_api.token_for("reader")
    pts = read(live_api, reader, "c-03", "cpu.percent", t0, t0 + 180)["series"][0]["points"]
    expect = sum(float(k % 13) for k in range(30)) / 30
    assert math.isclose(pts[0]["mean"], expect)


def test_openapi_health_and_request_log(live_api):
    assert live_api.request("GET", "/readyz").status_code == 200
    spec = live_api.request("GET", "/api/v1/openapi.json").json()
    assert "/api/v1/samples" in spec["paths"]
    r = live_api.request("GET", "/api/v1/hosts")
    assert r.status_code == 401 and set(r.json()) == {"error", "details"}
    text = live_api.log_path.read_text()
    assert "GET /api/v1/hosts 401" in text and "ms" in text
