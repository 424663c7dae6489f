"""Faults under load: a gunicorn worker SIGKILLed, influxd killed, the agent's network cut and
its process SIGKILLed, the SQLite store's disk full. After each, every acknowledged sample is
stored exactly once (the zero-loss check of bench/load.py, from harness)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from harness.fleet import LoadConfig, create_tokens, run_load, window_body
from harness.influxd import kill_influxd
from harness.net import samples_headers
from harness.outage import agent_outage
from harness.procs import worker_pids
from harness.zeroloss import stored_influx, stored_sqlite
from tests.conftest import ADMIN, small_tmpfs, start_gunicorn, stop_gunicorn
from tests.test_load import INFLUX_STORE, check_zero_loss

QUIET = {"FLEETPULSE_LOG_LEVEL": "WARNING"}
NO_ANSWER = {"RemoteDisconnected", "ConnectionResetError", "BrokenPipeError", "TimeoutError",
             "ConnectionRefusedError", "IncompleteRead", "BadStatusLine"}  # fmt: skip


def background_load(url: str, cfg: LoadConfig) -> tuple[threading.Thread, dict]:
    """Tokens, then the simulated fleet in a thread; the dict fills in when it is done."""
    tokens = create_tokens(url, cfg.prefix, cfg.hosts, ADMIN)
    box: dict = {}
    th = threading.Thread(target=lambda: box.update(run_load(url, tokens, cfg)), daemon=True)
    th.start()
    return th, box


@pytest.mark.e2e
def test_worker_sigkill_mid_load(tmp_path: Path) -> None:
    api = start_gunicorn(tmp_path, workers=3, env_extra=QUIET)
    try:
        cfg = LoadConfig(hosts=200, duration=30, speed=10, prefix="wk")
        th, box = background_load(api.url, cfg)
        time.sleep(10)
        before = worker_pids(api.proc.pid)
        assert len(before) == 3, before
        os.kill(before[0], signal.SIGKILL)
        killed = time.time()
        answered = 0
        while time.time() < killed + 3:  # the other workers keep answering meanwhile
            assert requests.get(api.url + "/healthz", timeout=5).status_code == 200
            answered += 1
        deadline = time.time() + 30
        while time.time() < deadline:  # the master replaces it
            now = worker_pids(api.proc.pid)
            if len(now) == 3 and before[0] not in now:
                break
            time.sleep(0.2)
        assert len(now) == 3 and before[0] not in now, (before, now)
        assert api.proc.poll() is None
        th.join(cfg.duration + cfg.drain + 60)
    finally:
        stop_gunicorn(api.proc)
    res = box
    print(
        f"\nworker kill: errors {res['errors']}, {answered} healthz answers in 3 s, {before}->{now}"
    )
    assert set(res["errors"]) <= NO_ANSWER, res["errors"]  # never a 5xx; at most cut requests
    check_zero_loss(res, stored_sqlite(api.db_path), cfg.series)


@pytest.mark.e2e
def test_agent_network_outage_and_sigkill(tmp_path: Path) -> None:
    """40 s without network (the proxy's port closed), the agent SIGKILLed and restarted 15 s in."""
    api = start_gunicorn(tmp_path, workers=2, env_extra=QUIET)
    try:
        res = agent_outage(api.url, ADMIN, api.db_path, tmp_path, outage=40, kill_at=15)
    finally:
        stop_gunicorn(api.proc)
    print(f"\nagent outage: { ({k: v for k, v in res.items() if k != 'log_tail'}) }")
    assert set(res["statuses"]) == {200}, res["statuses"]
    # batches closed during the outage were spooled and delivered after it, across the kill
    assert res["acked_in_outage_before_kill"] > 0, res
    assert res["acked_distinct"] == res["acked_accepted_sum"], res  # no sample acked twice
    assert res["windows_equal"], (res["missing"], res["extra"])
    assert res["stored_sum"] == res["acked_distinct"]
    # only the window open in memory at the SIGKILL (10 s) and the restart are missing
    assert res["max_gap_s"] <= 10 + 6, res["max_gap_s"]
    assert "Traceback" not in res["log_tail"], res["log_tail"]


# ---- disk full ---------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (a real file system that fills up); skipped where mounting is refused."""
    with small_tmpfs(tmp_path / "small", "2m") as d:
        yield d


def post(url: str, token: str, body: bytes) -> requests.Response:
    return requests.post(
        url + "/api/v1/samples",
        data=body,
        headers=samples_headers(token),
        timeout=30,
    )


@pytest.mark.e2e
def test_sqlite_disk_full_then_space_returns(tmp_path: Path, small_disk: Path) -> None:
    api = start_gunicorn(
        tmp_path, workers=2, storage_url=f"sqlite:///{small_disk}/store.db", env_extra=QUIET
    )
    db = small_disk / "store.db"
    acked = 0
    base = (int(time.time()) // 30 - 2000) * 30
    try:
        tok = api.token_for("agent", "full-a")
        full = None
        for k in range(1000):  # fill it up: new windows of one host until the store refuses
            body, _ = window_body("full-a", 1, 40, base + 30 * k, k == 0)
            r = post(api.url, tok, body)
            if r.status_code != 200:
                full = (k, body, r)
                break
            acked += r.json()["accepted"]
        assert full is not None, "2 MiB never filled up"
        k_full, body_full, r = full
        full_status = r.status_code
        assert full_status in (507, 503), r.text
        assert r.json()["error"] and r.json()["details"]
        if r.status_code == 503:
            assert r.headers["Retry-After"]
        # the process is up, reads are answered, the same batch is refused again (not half-kept)
        assert requests.get(api.url + "/healthz", timeout=5).status_code == 200
        assert api.request("GET", "/api/v1/hosts", ADMIN).status_code == 200
        assert post(api.url, tok, body_full).status_code in (507, 503)
        # hosts never seen before (their series rows are created in the transaction that
        # fails): small writes may still fit, so new hosts come until one is refused too
        refused_new = None
        for b in range(20):
            host_b = f"full-b{b}"
            tok_b = api.token_for("agent", host_b)
            body_b, _ = window_body(host_b, 2, 40, base, True)
            r_b = post(api.url, tok_b, body_b)
            if r_b.status_code != 200:
                assert r_b.status_code in (507, 503), r_b.text
                refused_new = (host_b, tok_b, body_b)
                break
            acked += r_b.json()["accepted"]
        assert refused_new is not None, "every new host fitted"
        host_b, tok_b, body_b = refused_new
        check = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        check.close()

        subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
        for t, body in [(tok, body_full), (tok_b, body_b)]:
            r = post(api.url, t, body)
            assert r.status_code == 200, r.text
            acked += r.json()["accepted"]
        for k in range(k_full + 1, k_full + 6):  # and it goes on
            body, _ = window_body("full-a", 1, 40, base + 30 * k, False)
            r = post(api.url, tok, body)
            assert r.status_code == 200, r.text
            acked += r.json()["accepted"]
        got = api.request(
            "GET", "/api/v1/series", ADMIN,
            params={"host": host_b, "metric": "sim.m1", "start": base - 30, "end": base + 60},
        )  # fmt: skip
        assert got.status_code == 200 and got.json()["series"], got.text
        assert got.json()["series"][0]["points"][0]["count"] == 30, got.text
    finally:
        stop_gunicorn(api.proc)
    stored = stored_sqlite(db)
    print(f"\ndisk full after {k_full} batches ({full_status}); stored {stored}, acked {acked}")
    assert stored["integrity"] == "ok"
    assert stored["sum"] == acked and stored["max_count"] == 30, (stored, acked)
    series = sqlite3.connect(f"file:{db}?mode=ro", uri=True).execute(
        "SELECT COUNT(*), COUNT(DISTINCT id) FROM series"
    )
    n_series = 40 * (2 + b)
    assert series.fetchone() == (n_series, n_series)


# ---- influxd killed ----------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.influx
@pytest.mark.skipif(not INFLUX_STORE, reason="app/storage/influxdb.py is not there yet")
def test_influxd_killed_and_restarted_mid_load(tmp_path: Path, influxd) -> None:
    url = influxd.new_db_url()
    api = start_gunicorn(tmp_path, workers=3, storage_url=url, env_extra=QUIET)
    try:
        cfg = LoadConfig(hosts=100, duration=40, speed=10, prefix="ix", backoff_cap=4)
        th, box = background_load(api.url, cfg)
        probe = api.token_for("agent", "ix-probe")
        body, _ = window_body("ix-probe", 9, 2, (int(time.time()) // 30 - 3) * 30, True)
        time.sleep(10)
        kill_influxd(influxd)
        down = time.time()
        seen_503 = None
        while time.time() < down + 12:  # the API stays up and answers 503 meanwhile
            assert requests.get(api.url + "/healthz", timeout=5).status_code == 200
            r = post(api.url, probe, body)
            if r.status_code == 503:
                seen_503 = r
            time.sleep(0.5)
        assert seen_503 is not None, r.text
        assert seen_503.headers.get("Retry-After"), seen_503.headers
        assert requests.get(api.url + "/readyz", timeout=10).status_code == 503
        influxd.start()
        th.join(cfg.duration + cfg.drain + 60)
        assert requests.get(api.url + "/readyz", timeout=10).status_code == 200
    finally:
        stop_gunicorn(api.proc)
        influxd.start()
    res = box
    print(f"\ninfluxd kill: errors {res['errors']}, delivery max {res['delivery_max_s']:.1f} s")
    assert res["errors"].get("503", 0) > 0, res["errors"]  # the fleet saw the outage
    assert set(res["errors"]) <= {"503"} | NO_ANSWER, res["errors"]
    check_zero_loss(res, stored_influx(url), cfg.series)


def test_series_ids_of_a_rolled_back_transaction_are_not_reused(tmp_path: Path) -> None:
    """The disk-full bug, without a disk: a failed write must not leave its new ids cached."""
    from app.storage.registry import REGISTRY_SCHEMA, Registry
    from app.storage.sqldb import SqliteDB

    db = SqliteDB(str(tmp_path / "r.db"), REGISTRY_SCHEMA)
    reg = Registry(db)
    key = ("cpu.percent", (("cpu", "total"),))
    with pytest.raises(RuntimeError), db.tx() as con:  # e.g. SQLITE_FULL at COMMIT
        reg.ids(con, "h1", [key], ["percent"])
        raise RuntimeError("the write failed after the series rows were inserted")
    with db.tx() as con:
        other, fresh = reg.ids(con, "h2", [key], ["percent"])  # takes the rolled-back rowid
    reg.keep(fresh)
    with db.tx() as con:
        (sid,), fresh = reg.ids(con, "h1", [key], ["percent"])
    reg.keep(fresh)
    assert sid != other[0]
    assert db.read("SELECT host FROM series WHERE id=?", (sid,)) == [("h1",)]
