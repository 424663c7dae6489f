"""Enrollment (contract sections 2 and 7): an enroll token makes each new host its own agent
token, once per host, within its uses and its expiry; it can do nothing else."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from tests.conftest import now30


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def enroll_token(client, **extra) -> str:
    r = client.post("/api/v1/tokens", {"role": "enroll", **extra})
    assert r.status_code == 201, r.json
    assert r.json["role"] == "enroll" and r.json["host"] is None
    return r.json["token"]


def enroll(client, token: str, host) -> object:
    return client.post("/api/v1/enroll", {"host": host}, token=token)


def test_an_enrolled_host_writes_its_own_series_only(client):
    tok = enroll_token(client)
    r = enroll(client, tok, "web-07")
    assert r.status_code == 201, r.json
    assert r.json["role"] == "agent" and r.json["host"] == "web-07" and r.json["id"]
    agent = r.json["token"]
    pts = [[now30() - 60, 1.0]]
    series = [{"metric": "cpu.percent", "points": pts}]
    assert client.samples("web-07", series, token=agent).status_code == 200
    assert client.samples("web-08", series, token=agent).status_code == 403


def test_a_host_enrolls_once_and_a_refusal_spends_no_use(client):
    tok = enroll_token(client, uses=2)
    assert enroll(client, tok, "a1").status_code == 201
    r = enroll(client, tok, "a1")
    assert r.status_code == 409 and "already" in r.json["error"]
    r = enroll(client, tok, "not a host!")
    assert r.status_code == 400 and "host" in r.json["details"]
    assert enroll(client, tok, "a2").status_code == 201  # neither refusal spent a use
    r = enroll(client, tok, "a3")
    assert r.status_code == 401  # used up
    (listed,) = [t for t in client.get("/api/v1/tokens").json if t["role"] == "enroll"]
    assert listed["uses_left"] == 0


def test_an_expired_or_revoked_enroll_token_is_refused(client):
    tok = enroll_token(client, expires=iso(time.time() + 1.5))
    (listed,) = [t for t in client.get("/api/v1/tokens").json if t["role"] == "enroll"]
    assert listed["expires"].endswith("Z")
    time.sleep(1.6)
    assert enroll(client, tok, "late-host").status_code == 401
    tok2 = enroll_token(client)
    (row,) = [
        t for t in client.get("/api/v1/tokens").json if t["role"] == "enroll" and not t["expires"]
    ]
    assert client.delete(f"/api/v1/tokens/{row['id']}").status_code == 204
    assert enroll(client, tok2, "b1").status_code == 401


def test_an_enroll_token_can_do_nothing_else(client):
    tok = enroll_token(client)
    assert client.get("/api/v1/hosts", token=tok).status_code == 403
    assert client.get("/api/v1/tokens", token=tok).status_code == 403
    assert client.post("/api/v1/tokens", {"role": "reader"}, token=tok).status_code == 403
    series = [{"metric": "cpu.percent", "points": [[now30() - 60, 1.0]]}]
    assert client.samples("x1", series, token=tok).status_code == 403
    reader = client.token_for("reader")
    assert enroll(client, reader, "x2").status_code == 403


def test_bad_enroll_token_requests(client):
    for body, field in (
        ({"role": "enroll", "expires": iso(time.time() - 10)}, "expires"),
        ({"role": "enroll", "expires": "tomorrow"}, "expires"),
        ({"role": "enroll", "uses": 0}, "uses"),
        ({"role": "enroll", "uses": "3"}, "uses"),
        ({"role": "reader", "uses": 3}, "uses"),
        ({"role": "enroll", "host": "h"}, "host"),
    ):
        r = client.post("/api/v1/tokens", body)
        assert r.status_code == 400 and field in r.json["details"], (body, r.json)


def test_an_older_metadata_file_gets_the_new_columns(tmp_path):
    """A metadata file made before enrollment existed opens, keeps its tokens, and enrolls."""
    import sqlite3

    from app.storage.meta import MetaStore, hash_token

    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    con.executescript(
        "CREATE TABLE tokens (id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, role TEXT NOT NULL,"
        " host TEXT, created_at REAL NOT NULL, revoked_at REAL);"
    )
    con.execute(
        "INSERT INTO tokens VALUES ('r1', ?, 'reader', NULL, 1.0, NULL)", (hash_token("t"),)
    )
    con.commit()
    con.close()
    meta = MetaStore(f"sqlite://{path}")
    assert meta.lookup("t").role == "reader"
    info, _ = meta.create_token("enroll", None, time.time() + 60, 1)
    assert meta.enroll(info.id, "h1")[0].host == "h1"
    assert [t.uses_left for t in meta.list_tokens() if t.role == "enroll"] == [0]
    meta.close()
