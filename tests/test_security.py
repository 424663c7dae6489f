"""The security model (CONTRACT.md section 2, SECURITY.md): who may call what, revocation on every
worker, per-token rate limits, and TLS straight from gunicorn."""

from __future__ import annotations

import logging
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import ADMIN, Client, now30, start_gunicorn, stop_gunicorn

OWN = "web-01"


def body_for(host: str) -> dict:
    """A valid one-sample batch for ``host``."""
    return {"host": host, "series": [{"metric": "cpu.percent", "points": [[now30(), 1.0]]}]}


@dataclass
class Endpoint:
    """One operation of the API and how to call it with a given Authorization header."""

    name: str
    call: Callable[[Client, dict], Any]


def _fresh_token_id(c: Client) -> str:
    """A live token to revoke, made by the env admin (the DELETE must have something to hit)."""
    r = c.post("/api/v1/tokens", {"role": "reader"}, token=ADMIN)
    assert r.status_code == 201
    return r.json["id"]


def _series(c: Client, h: dict) -> Any:
    q = {"host": OWN, "metric": "cpu.percent", "start": now30() - 60, "end": now30() + 60}
    return c.c.get("/api/v1/series", query_string=q, headers=h)


def _energy(c: Client, h: dict) -> Any:
    q = {"host": OWN, "start": now30() - 60, "end": now30() + 60}
    return c.c.get("/api/v1/energy", query_string=q, headers=h)


ENDPOINTS = [
    Endpoint(
        "POST samples own", lambda c, h: c.c.post("/api/v1/samples", json=body_for(OWN), headers=h)
    ),
    Endpoint(
        "POST samples other",
        lambda c, h: c.c.post("/api/v1/samples", json=body_for("db-9"), headers=h),
    ),
    Endpoint("GET series", _series),
    Endpoint("GET hosts", lambda c, h: c.c.get("/api/v1/hosts", headers=h)),
    Endpoint("GET host", lambda c, h: c.c.get(f"/api/v1/hosts/{OWN}", headers=h)),
    Endpoint("GET energy", _energy),
    Endpoint(
        "POST tokens", lambda c, h: c.c.post("/api/v1/tokens", json={"role": "reader"}, headers=h)
    ),
    Endpoint("GET tokens", lambda c, h: c.c.get("/api/v1/tokens", headers=h)),
    Endpoint(
        "DELETE token", lambda c, h: c.c.delete(f"/api/v1/tokens/{_fresh_token_id(c)}", headers=h)
    ),
    Endpoint("GET healthz", lambda c, h: c.c.get("/healthz", headers=h)),
    Endpoint("GET readyz", lambda c, h: c.c.get("/readyz", headers=h)),
    Endpoint("GET openapi", lambda c, h: c.c.get("/api/v1/openapi.json", headers=h)),
]
PUBLIC = {"GET healthz": 200, "GET readyz": 200, "GET openapi": 200}
ALL_OK = {
    "POST samples own": 200,
    "POST samples other": 200,
    "GET series": 200,
    "GET hosts": 200,
    "GET host": 200,
    "GET energy": 200,
    "POST tokens": 201,
    "GET tokens": 200,
    "DELETE token": 204,
    **PUBLIC,
}
NOBODY = {name: 401 for name in ALL_OK} | PUBLIC
READER = (
    {name: 200 for name in ALL_OK}
    | {
        "POST samples own": 403,
        "POST samples other": 403,
        "POST tokens": 403,
        "GET tokens": 403,
        "DELETE token": 403,
    }
    | PUBLIC
)
AGENT = {name: 403 for name in ALL_OK} | {"POST samples own": 200} | PUBLIC
AGENT_ELSEWHERE = {name: 403 for name in ALL_OK} | PUBLIC

# caller -> (how to build the Authorization header from the tokens made, expected answers)
CALLERS: dict[str, tuple[Callable[[dict], dict], dict[str, int]]] = {
    "agent own host": (lambda t: {"Authorization": f"Bearer {t['agent']}"}, AGENT),
    "agent other host": (lambda t: {"Authorization": f"Bearer {t['agent2']}"}, AGENT_ELSEWHERE),
    "reader": (lambda t: {"Authorization": f"Bearer {t['reader']}"}, READER),
    "admin (API token)": (lambda t: {"Authorization": f"Bearer {t['admin']}"}, ALL_OK),
    "env admin": (lambda t: {"Authorization": f"Bearer {ADMIN}"}, ALL_OK),
    # Auth schemes are case-insensitive (RFC 9110 11.1): lowercase bearer is the same caller.
    "lowercase bearer reader": (lambda t: {"Authorization": f"bearer {t['reader']}"}, READER),
    "no header": (lambda t: {}, NOBODY),
    "unknown token": (lambda t: {"Authorization": "Bearer fp_not-a-real-token"}, NOBODY),
    "revoked admin token": (lambda t: {"Authorization": f"Bearer {t['revoked']}"}, NOBODY),
    "Basic scheme": (lambda t: {"Authorization": f"Basic {t['admin']}"}, NOBODY),
    "Bearer, no token": (lambda t: {"Authorization": "Bearer"}, NOBODY),
    "Bearer, spaces only": (lambda t: {"Authorization": "Bearer    "}, NOBODY),
    "token without scheme": (lambda t: {"Authorization": t["admin"]}, NOBODY),
    "env admin token as a prefix": (lambda t: {"Authorization": f"Bearer {ADMIN}x"}, NOBODY),
    "env admin token truncated": (lambda t: {"Authorization": f"Bearer {ADMIN[:-1]}"}, NOBODY),
    "token twice": (lambda t: {"Authorization": f"Bearer {t['admin']} {t['admin']}"}, NOBODY),
}


@pytest.mark.parametrize("caller", list(CALLERS))
def test_auth_matrix(client, caller):
    """Every endpoint for one caller gives the documented status; 401s say how to authenticate."""
    c = client
    tokens = {
        "agent": c.token_for("agent", OWN),
        "agent2": c.token_for("agent", "db-9-other"),
        "reader": c.token_for("reader"),
        "admin": c.token_for("admin"),
    }
    revoked = c.post("/api/v1/tokens", {"role": "admin"})
    tokens["revoked"] = revoked.json["token"]
    assert c.delete(f"/api/v1/tokens/{revoked.json['id']}").status_code == 204
    assert c.samples(OWN, body_for(OWN)["series"]).status_code == 200  # so GET host is a 200
    make_header, expected = CALLERS[caller]
    headers = make_header(tokens)
    got = {}
    for ep in ENDPOINTS:
        r = ep.call(c, headers)
        got[ep.name] = r.status_code
        if r.status_code >= 400:
            assert set(r.json) == {"error", "details"}, (ep.name, r.json)
        if r.status_code == 401:
            assert r.headers["WWW-Authenticate"].startswith("Bearer"), ep.name
    assert got == expected


def test_tokens_never_leak(client, app):
    """Token text appears once (the 201), never in listings, errors or the metadata file."""
    r = client.post("/api/v1/tokens", {"role": "agent", "host": OWN})
    tok = r.json["token"]
    assert re.fullmatch(r"fp_[A-Za-z0-9_-]{43}", tok), tok  # 256 random bits
    seen = [
        client.get("/api/v1/tokens").get_data(),
        client.samples("other-host", body_for("x")["series"], token=tok).get_data(),
        client.get("/api/v1/hosts", token=tok).get_data(),
        client.c.get("/api/v1/hosts", headers={"Authorization": f"Basic {tok}"}).get_data(),
    ]
    assert not any(tok.encode() in s for s in seen)
    meta = Path(app.extensions["fleetpulse"].meta.db.path)
    for f in meta.parent.glob(meta.name + "*"):  # the file, its WAL and shm
        assert tok.encode() not in f.read_bytes(), f


def test_logs_carry_no_tokens_queries_or_bodies(client, caplog):
    """One line per request (method, path, status, duration): no secret or payload in the logs."""
    caplog.set_level(logging.DEBUG)
    tok = client.token_for("agent", OWN)
    secret_tag = "tag-value-that-must-not-be-logged"
    s = [{"metric": "cpu.percent", "tags": {"k": secret_tag}, "points": [[now30(), 1.0]]}]
    assert client.samples(OWN, s, token=tok).status_code == 200
    assert client.samples("db-9", s, token=tok).status_code == 403
    client.c.get("/api/v1/hosts", headers={"Authorization": f"Bearer {tok}x"})
    client.series(OWN, "cpu.percent", "secret-start", 1)
    text = "\n".join(r.getMessage() for r in caplog.records)
    for needle in (tok, ADMIN, secret_tag, "secret-start", "Bearer"):
        assert needle not in text, needle
    lines = [r.getMessage() for r in caplog.records if r.name == "fleetpulse.request"]
    assert re.fullmatch(r"POST /api/v1/samples 200 [0-9.]+ms", lines[-4]), lines
    assert re.fullmatch(r"GET /api/v1/series 400 [0-9.]+ms", lines[-1]), lines


def test_agent_cannot_escape_its_host(client):
    """Mixed-case, padded or look-alike host names are other hosts (403), never its own."""
    tok = client.token_for("agent", OWN)
    for host in ("WEB-01", "web-01 ", "web-01.", "web-010", "web_01"):
        r = client.samples(host, body_for(host)["series"], token=tok)
        assert r.status_code in (400, 403), (host, r.json)
    assert client.get("/api/v1/hosts").json == []
    assert client.samples(OWN, body_for(OWN)["series"], token=tok).status_code == 200


# ---- a real gunicorn with 2 workers ----------------------------------------------------------


def worker_pids(log: Path, line: str) -> set[int]:
    """Worker pids that logged a request line (the log format carries %(process)d)."""
    pids = set()
    for row in log.read_text(errors="replace").splitlines():
        if row.endswith("ms") and line in row:
            pids.add(int(row.split()[2]))
    return pids


def fresh_get(url: str, token: str) -> int:
    """One request on a new TCP connection (no keep-alive), so the kernel picks the worker."""
    h = {"Authorization": f"Bearer {token}", "Connection": "close"}
    return requests.get(url, headers=h, timeout=10).status_code


def on_both_workers(api: Any, token: str, status: int) -> list[int]:
    """GET /api/v1/hosts until each of the 2 workers has answered it; all the codes seen.

    An idle sync worker drains the whole accept queue, so a burst can land on one worker only.
    A half-sent request pins whichever worker accepts it: pin X, burst (to Y); pin Y, free X,
    burst (to X). On a busy machine a pin can be accepted late and land elsewhere, so rounds
    repeat (at most 6) until the log shows both workers.
    """
    url = api.url + "/api/v1/hosts"
    host, port = api.url.removeprefix("http://").split(":")
    wanted = f"GET /api/v1/hosts {status}"

    def pin() -> socket.socket:
        s = socket.create_connection((host, int(port)))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # no blank line: the worker waits
        time.sleep(0.2)
        return s

    def burst() -> list[int]:
        with ThreadPoolExecutor(4) as pool:
            return list(pool.map(lambda _: fresh_get(url, token), range(12)))

    codes: list[int] = []
    for _ in range(6):
        first = pin()
        codes += burst()
        second = pin()
        first.close()
        time.sleep(0.2)
        codes += burst()
        second.close()
        time.sleep(0.2)  # let the log lines land
        if len(worker_pids(api.log_path, wanted)) == 2:
            return codes
    pids = worker_pids(api.log_path, wanted)
    raise AssertionError(f"{status} came from workers {pids} only: {codes}")


@pytest.mark.e2e
def test_revocation_takes_effect_on_every_worker_at_once(live_api):
    """Both workers accept a token; after one DELETE, both refuse it on the very next requests."""
    made = live_api.request("POST", "/api/v1/tokens", ADMIN, json={"role": "reader"}).json()
    assert set(on_both_workers(live_api, made["token"], 200)) == {200}
    r = live_api.request("DELETE", f"/api/v1/tokens/{made['id']}", ADMIN)
    assert r.status_code == 204
    after = on_both_workers(live_api, made["token"], 401)
    assert set(after) == {401} and len(after) >= 12, after


@pytest.mark.e2e
def test_rate_limit_per_token_through_gunicorn(tmp_path):
    """One token flooding gets 429 + Retry-After from every worker, from one shared bucket;
    another token is untouched."""
    api = start_gunicorn(
        tmp_path, env_extra={"FLEETPULSE_RATE_LIMIT": "2", "FLEETPULSE_RATE_BURST": "5"}
    )
    try:
        noisy = api.token_for("reader")
        quiet = api.token_for("reader")
        url = api.url + "/api/v1/hosts"
        headers = {"Authorization": f"Bearer {noisy}", "Connection": "close"}
        t0 = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            flood = list(
                pool.map(lambda _: requests.get(url, headers=headers, timeout=10), range(60))
            )
        elapsed = time.monotonic() - t0
        codes = [r.status_code for r in flood]
        assert set(codes) <= {200, 429}, codes
        # both workers answered the flood, yet the token got one burst (5) plus what 2/s refills
        # while it lasted: the buckets are shared by the workers, not one per worker
        time.sleep(0.2)  # let the log lines land
        assert len(worker_pids(api.log_path, "GET /api/v1/hosts ")) == 2
        assert codes.count(200) <= 5 + 2 * (elapsed + 0.5), (elapsed, codes)
        limited = [r for r in flood if r.status_code == 429]
        assert limited, codes
        for r in limited:
            assert int(r.headers["Retry-After"]) >= 1
            assert set(r.json()) == {"error", "details"}
        assert {fresh_get(url, quiet) for _ in range(4)} == {200}
    finally:
        stop_gunicorn(api.proc)


# ---- TLS straight from gunicorn --------------------------------------------------------------


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A one-day certificate for 127.0.0.1 from the openssl CLI."""
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.fixture
def tls_api(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """gunicorn -c gunicorn.conf.py with FLEETPULSE_TLS_CERT/KEY; waits on https /healthz."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is not installed")
    cert, key = self_signed(tmp_path)
    api = start_gunicorn(tmp_path, workers=1, tls=(cert, key))
    try:
        yield api.url, cert
    finally:
        stop_gunicorn(api.proc)


@pytest.mark.e2e
def test_tls_from_gunicorn(tls_api):
    """https with the certificate verified; plain http and unverified trust both fail."""
    url, cert = tls_api
    r = requests.get(url + "/healthz", verify=str(cert), timeout=10)
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = requests.get(
        url + "/api/v1/hosts",
        verify=str(cert),
        timeout=10,
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert r.status_code == 200 and r.json() == []
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url + "/healthz", timeout=10)  # the system CAs do not know this cert
    with pytest.raises(requests.ConnectionError):
        requests.get(url.replace("https:", "http:") + "/healthz", timeout=10)
