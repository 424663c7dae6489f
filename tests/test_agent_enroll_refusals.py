"""Enrollment refusals against the fake API: each kind is logged once, with what a person
does about it, and asked again only every RETRY_REFUSED seconds."""

from __future__ import annotations

import logging
import threading

import pytest

from agent import enroll
from agent.config import Config


@pytest.mark.parametrize(
    ("status", "says"),
    [
        (409, "already has an agent token"),
        (401, "expired, used up or revoked"),
        (400, "refuses the host name"),
    ],
)
def test_a_refusal_is_said_once_and_waits(fake_api, tmp_path, caplog, status, says):
    fake_api.default = ("status", status)
    cfg = Config(url=fake_api.url, enroll_token="e", host="web-01", spool_dir=tmp_path)
    job = enroll.Enrollment(cfg, lambda token: None)
    said: set[int] = set()
    with caplog.at_level(logging.ERROR):
        waits = [job.attempt(said) for _ in range(3)]
    assert waits == [enroll.RETRY_REFUSED] * 3
    (line,) = [r.getMessage() for r in caplog.records]
    assert f"enrollment refused ({status})" in line and says in line and "every 300 s" in line
    assert enroll.saved_token(tmp_path) is None


def test_the_loop_does_not_hammer_a_refusing_api(fake_api, tmp_path):
    fake_api.default = ("status", 409)
    cfg = Config(url=fake_api.url, enroll_token="e", host="web-01", spool_dir=tmp_path)
    stop = threading.Event()
    t = threading.Thread(target=enroll.Enrollment(cfg, lambda token: None).run, args=(stop,))
    t.start()
    threading.Event().wait(1.5)
    stop.set()
    t.join(5)
    assert not t.is_alive() and len(fake_api.received) == 1
