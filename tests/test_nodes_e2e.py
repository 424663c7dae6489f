"""Several API nodes (contract section 10): two real gunicorn nodes on one real PostgreSQL
(metadata) and one real influxd. Tokens hold on every node at once, batches of one host sent
to either node in any order store what one batch does, the job runs once per slot, and a node
killed or PostgreSQL restarted under load loses nothing acknowledged."""

from __future__ import annotations

import gzip
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import orjson
import pytest
import requests

from app.core.records import Query
from app.storage import StoreOptions, open_store
from harness.server import ROOT
from tests.conftest import now30, one_series_batch
from tests.pg_fixtures import Fleet

pytestmark = [pytest.mark.e2e, pytest.mark.influx]

SERIES = [("cpu.percent", "percent"), ("mem.used", "bytes"), ("gpu.power", "W")]


def samples(host_no: int, t0: int, seconds: int) -> dict[str, list[tuple[float, float]]]:
    """One sample a second per series, values that differ by host and series."""
    rnd = random.Random(host_no)
    return {
        m: [(t0 + k + 0.25, float(rnd.randint(0, 1000)) / 7) for k in range(seconds)]
        for m, _ in SERIES
    }


def cut(points: list, rnd: random.Random, most: int = 45) -> list[tuple[list, list | None]]:
    """Contiguous runs of random length, each with the carry of the sample before it."""
    out, a = [], 0
    while a < len(points):
        b = min(len(points), a + rnd.randint(1, most))
        out.append((points[a:b], None if a == 0 else list(points[a - 1])))
        a = b
    return out


def body(host: str, metric: str, pts: list, carry: list | None) -> bytes:
    unit = dict(SERIES)[metric]
    item = {"metric": metric, "unit": unit, "points": [list(p) for p in pts]}
    if carry is not None:
        item["carry"] = carry
    return gzip.compress(orjson.dumps({"host": host, "series": [item]}))


class Sender:
    """Delivers a batch to some node, retrying on the other one until it is acknowledged."""

    def __init__(self, fleet: Fleet, token: str) -> None:
        self.fleet, self.token = fleet, token
        self.refused: Counter = Counter()
        self.lock = threading.Lock()

    def deliver(self, data: bytes, first: int) -> None:
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        }
        deadline, k = time.monotonic() + 90, first
        while True:
            node = self.fleet.nodes[k % len(self.fleet.nodes)]
            try:
                r = requests.post(node.url + "/api/v1/samples", data=data, headers=headers,
                                  timeout=15)  # fmt: skip
                if r.status_code == 200:
                    return
                assert r.status_code == 503 and r.headers.get("Retry-After"), r.text
                why = str(r.status_code)
            except requests.RequestException as e:
                why = type(e).__name__
            with self.lock:
                self.refused[why] += 1
            assert time.monotonic() < deadline, self.refused
            k += 1  # the retry goes to the other node
            time.sleep(0.05)


def oracle(influxd, tmp_path, data: dict[str, dict[str, list]]):
    """The same samples written as one batch per series through one store: what one node
    stores whatever the batching."""
    store = open_store(
        influxd.new_db_url(), StoreOptions(90.0, metadata_url=f"sqlite://{tmp_path}/oracle.db")
    )
    for host, series in data.items():
        for metric, pts in series.items():
            t, v = zip(*pts, strict=True)
            store.write(one_series_batch(host, t, v, metric=metric, unit=dict(SERIES)[metric]))
    return store


def assert_same_windows(fleet: Fleet, want_store, data: dict, t0: int, seconds: int) -> None:
    got_store = open_store(fleet.storage_url, StoreOptions(90.0, metadata_url=fleet.metadata_url))
    try:
        for host, series in data.items():
            for metric in series:
                q = Query(host, t0 - 30, t0 + seconds + 120, "30s", metric)
                (got,) = got_store.query(q)
                (want,) = want_store.query(q)
                g, w = got.windows, want.windows
                assert g.time.tolist() == w.time.tolist(), (host, metric)
                assert g.count.tolist() == w.count.tolist(), (host, metric)
                for f in ("mean", "min", "max", "last", "covered", "integral"):
                    assert getattr(g, f).tolist() == pytest.approx(
                        getattr(w, f).tolist(), rel=1e-12, abs=1e-9
                    ), (host, metric, f)
    finally:
        got_store.close()
        want_store.close()


def test_tokens_made_or_revoked_on_one_node_hold_on_the_other(fleet):
    a, b = fleet.nodes
    r = a.request("POST", "/api/v1/tokens", a.admin_token, json={"role": "agent", "host": "w1"})
    token, token_id = r.json()["token"], r.json()["id"]
    series = [{"metric": "cpu", "points": [[now30() - 60, 1.0]]}]
    assert b.post_samples(token, "w1", series).status_code == 200  # at once, on the other node
    assert a.request("DELETE", f"/api/v1/tokens/{token_id}", a.admin_token).status_code == 204
    assert b.post_samples(token, "w1", series).status_code == 401  # the very next request
    enroll = b.token_for("enroll")
    first = a.request("POST", "/api/v1/enroll", enroll, json={"host": "w2"})
    again = b.request("POST", "/api/v1/enroll", enroll, json={"host": "w2"})
    assert (first.status_code, again.status_code) == (201, 409)


def test_batches_of_one_host_to_both_nodes_in_any_order_equal_one_batch(fleet, influxd, tmp_path):
    """Random cuts, shuffled, sent by 4 threads to either node, a fifth of them sent again to
    the other node cut differently (a retry after a lost answer)."""
    t0, seconds = now30() - 600, 480
    data = {f"any-{h}": samples(h, t0, seconds) for h in range(3)}
    rnd = random.Random(7)
    jobs = []
    for host, series in data.items():
        for metric, pts in series.items():
            jobs += [(host, metric, p, c) for p, c in cut(pts, rnd)]
            jobs += [(host, metric, p, c) for p, c in cut(pts, rnd) if rnd.random() < 0.2]
    rnd.shuffle(jobs)
    sender = Sender(fleet, fleet.nodes[0].admin_token)
    errors: list = []

    def run(part: list) -> None:
        try:
            for i, (host, metric, pts, carry) in enumerate(part):
                sender.deliver(body(host, metric, pts, carry), i)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(jobs[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    assert_same_windows(fleet, oracle(influxd, tmp_path, data), data, t0, seconds)


def load(fleet: Fleet, data: dict, during, after_batches: int) -> Sender:
    """Each host sends its windows in order, as an agent does, alternating nodes; ``during``
    runs once ``after_batches`` batches are acknowledged."""
    sender = Sender(fleet, fleet.nodes[0].admin_token)
    done, fired, errors = Counter(), threading.Event(), []

    def host_loop(host: str, series: dict) -> None:
        try:
            n = len(next(iter(series.values())))
            for i, a in enumerate(range(0, n, 30)):
                for metric, pts in series.items():
                    carry = None if a == 0 else list(pts[a - 1])
                    sender.deliver(body(host, metric, pts[a : a + 30], carry), i)
                    with sender.lock:
                        done["n"] += 1
                        go = done["n"] >= after_batches and not fired.is_set()
                        if go:
                            fired.set()
                    if go:
                        during()
                    time.sleep(0.02)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=host_loop, args=kv) for kv in data.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    assert fired.is_set()
    return sender


def test_a_node_killed_mid_load_loses_nothing_acknowledged(fleet, influxd, tmp_path):
    t0, seconds = now30() - 600, 480
    data = {f"kill-{h}": samples(100 + h, t0, seconds) for h in range(4)}
    victim = fleet.nodes[0]
    sender = load(fleet, data, lambda: os.killpg(victim.proc.pid, signal.SIGKILL), 40)
    assert sum(sender.refused.values()) > 0  # the kill was felt, and retried on the other node
    assert_same_windows(fleet, oracle(influxd, tmp_path, data), data, t0, seconds)


def test_postgres_restarted_under_load_gives_503s_then_everything_once(
    fleet, postgres, influxd, tmp_path
):
    t0, seconds = now30() - 600, 480
    data = {f"pg-{h}": samples(200 + h, t0, seconds) for h in range(4)}

    def restart() -> None:  # down longer than a request waits for a connection (2 s)
        postgres.stop()
        time.sleep(5.0)
        postgres.start()

    sender = load(fleet, data, restart, 30)
    assert sender.refused["503"] > 0, sender.refused
    assert_same_windows(fleet, oracle(influxd, tmp_path, data), data, t0, seconds)
    for node in fleet.nodes:  # both nodes serve again
        assert node.request("GET", "/readyz").status_code == 200


def test_the_job_runs_once_per_slot_across_nodes(influxd, pg_url, tmp_path):
    """Two nodes of two workers, a 1-second slot: every slot that ran, ran on one worker."""
    fleet = Fleet(tmp_path, influxd.new_db_url(), pg_url, {"FLEETPULSE_JOBS": "1",
                  "FLEETPULSE_JOB_INTERVAL": "1"})  # fmt: skip
    try:
        fleet.start()
        fleet.start()
        time.sleep(8)
    finally:
        fleet.stop()
    slots = [
        int(m)
        for node in fleet.nodes
        for m in re.findall(r"job downsample slot=(\d+)", node.log_path.read_text())
    ]
    assert len(slots) >= 3, slots
    assert len(slots) == len(set(slots)), sorted(slots)


def start_refused(fleet: Fleet, env: dict) -> str:
    """A node that must not start: its exit status and log."""
    env = {**os.environ, **fleet.node_env(), "FLEETPULSE_STORAGE_URL": fleet.storage_url,
           "GUNICORN_CMD_ARGS": "--bind 127.0.0.1:0 --workers 2", **env}  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode != 0
    assert "Booting worker" not in run.stderr  # refused before any worker
    return run.stderr


def test_a_node_with_other_settings_or_a_wrong_url_does_not_start(fleet, postgres):
    out = start_refused(fleet, {"FLEETPULSE_HOLD": "60"})
    assert "FLEETPULSE_HOLD is '60s' here but '90s' there" in out, out
    out = start_refused(fleet, {"FLEETPULSE_30S_RETENTION": "3d"})
    assert "FLEETPULSE_30S_RETENTION is '259200s' here but '604800s' there" in out, out
    wrong = fleet.metadata_url.replace("pg-secret", "nope")
    out = start_refused(fleet, {"FLEETPULSE_METADATA_URL": wrong})
    assert "FLEETPULSE_METADATA_URL=postgresql://fleetpulse:***@" in out and "nope" not in out
    out = start_refused(fleet, {"FLEETPULSE_METADATA_URL": "postgresql://u:p@127.0.0.1:9/x"})
    assert "FLEETPULSE_METADATA_URL" in out, out
    # the running nodes were not disturbed
    assert all(n.request("GET", "/readyz").status_code == 200 for n in fleet.nodes)
