"""Per-token rate limiting: a 429 with Retry-After for the noisy token, not for the others."""

from __future__ import annotations

from app import create_app
from app.ratelimit import RateLimiter, retry_after
from tests.conftest import ADMIN, Client


def test_bucket_refills_at_the_rate():
    rl = RateLimiter(rate=2.0, burst=3.0)
    assert [rl.acquire("a", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert rl.acquire("a", now=0.0) == 0.5
    assert rl.acquire("b", now=0.0) == 0.0  # other keys are untouched
    assert rl.acquire("a", now=0.5) == 0.0
    assert RateLimiter(0, 0).acquire("x") == 0.0
    assert retry_after(0.01) == "1" and retry_after(2.2) == "3"


def test_noisy_token_gets_429_others_do_not(tmp_path):
    app = create_app(
        {
            "storage_url": f"sqlite:///{tmp_path}/r.db",
            "admin_token": ADMIN,
            "jobs": False,
            "rate_limit": 1.0,
            "rate_burst": 3.0,
        }
    )
    c = Client(app.test_client())
    reader = c.token_for("reader")
    codes = [c.get("/api/v1/hosts", token=reader).status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
    r = c.get("/api/v1/hosts", token=reader)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert set(r.json) == {"error", "details"}
    other = c.token_for("reader")
    assert c.get("/api/v1/hosts", token=other).status_code == 200
