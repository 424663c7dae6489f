"""Per-token rate limiting: a 429 with Retry-After for the noisy token, not for the others."""

from __future__ import annotations

import fcntl
import multiprocessing as mp
import os
import signal
import time

import pytest

from app.web import create_app
from app.web.ratelimit import LocalBuckets, RateLimiter, SharedBuckets, retry_after
from tests.conftest import ADMIN, Client


@pytest.mark.parametrize("kind", [LocalBuckets, SharedBuckets])
def test_bucket_refills_at_the_rate(kind):
    rl = RateLimiter(rate=2.0, burst=3.0, buckets=kind())
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
    # one number: the body says the seconds the header says
    assert r.json["details"]["Authorization"] == [
        f"rate limit exceeded; retry in {r.headers['Retry-After']} s"
    ]
    other = c.token_for("reader")
    assert c.get("/api/v1/hosts", token=other).status_code == 200


def _spend(buckets: SharedBuckets, key: str, n: int, out) -> None:
    rl = RateLimiter(rate=0.001, burst=5.0, buckets=buckets)
    out.put([rl.acquire(key, now=100.0) for _ in range(n)])


def test_shared_buckets_are_one_rate_across_forked_processes():
    """What gunicorn does: the master makes them, each forked worker spends from the same bucket."""
    buckets = SharedBuckets(slots=1024)
    ctx = mp.get_context("fork")  # the sharing is by fork, as in gunicorn (no SQLite here)
    out = ctx.Queue()
    procs = [ctx.Process(target=_spend, args=(buckets, "tok-a", 3, out)) for _ in range(3)]
    for p in procs:
        p.start()
    waits = sorted(w for _ in procs for w in out.get(timeout=30))
    for p in procs:
        p.join(30)
    assert waits[:5] == [0.0] * 5 and all(w > 0 for w in waits[5:]), waits  # 9 asks, burst 5
    parent = RateLimiter(rate=0.001, burst=5.0, buckets=buckets)
    assert parent.acquire("tok-a", now=100.0) > 0
    assert parent.acquire("tok-b", now=100.0) == 0.0


def test_shared_buckets_reuse_the_least_recent_slot_when_full():
    buckets = SharedBuckets(slots=4)  # every key probes all 4 slots
    rl = RateLimiter(rate=0.001, burst=1.0, buckets=buckets)
    for k, key in enumerate("abcd"):
        assert rl.acquire(key, now=float(k)) == 0.0
    assert rl.acquire("a", now=3.5) > 0  # still tracked
    assert rl.acquire("e", now=3.6) == 0.0  # takes the least recently used slot ("b", t=1)
    assert rl.acquire("c", now=3.7) > 0 and rl.acquire("d", now=3.8) > 0
    assert rl.acquire("b", now=3.9) == 0.0  # forgotten: a full bucket again


def _hold_lock_forever(buckets: SharedBuckets, ready) -> None:
    fcntl.lockf(buckets._lockfile, fcntl.LOCK_EX)
    ready.set()
    time.sleep(600)


def test_a_worker_killed_holding_the_lock_blocks_nobody():
    buckets = SharedBuckets(slots=64)
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    p = ctx.Process(target=_hold_lock_forever, args=(buckets, ready))
    p.start()
    assert ready.wait(30)
    os.kill(p.pid, signal.SIGKILL)
    p.join(30)
    t0 = time.monotonic()
    assert RateLimiter(1.0, 1.0, buckets).acquire("x") == 0.0
    assert time.monotonic() - t0 < 1.0
