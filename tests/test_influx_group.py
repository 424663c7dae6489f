"""Group commit on a real influxd: concurrent requests of one worker share one /write."""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable

import numpy as np
import pytest

from app.core.errors import StorageUnavailable
from app.core.records import Query
from app.storage import StoreOptions, open_store
from app.storage.influxdb.group import GroupWriter
from app.storage.influxdb.layout import RP_30S, parse_url
from app.storage.influxdb.protocol import InfluxHTTP
from app.storage.influxdb.store import InfluxStore
from app.storage.locks import LOCK_SLOTS
from tests.conftest import now30
from tests.conftest import one_series_batch as batch

pytestmark = pytest.mark.influx

RET = {"raw": 0.0, "30s": 7 * 86400.0, "30m": 400 * 86400.0}
N = 6  # concurrent requests


def hosts_on_distinct_slots(n: int, prefix: str) -> list[str]:
    """Host names whose write locks differ, so their requests can be in flight together."""
    out, slots, k = [], set(), 0
    while len(out) < n:
        name = f"{prefix}-{k}"
        slot = zlib.crc32(name.encode()) % LOCK_SLOTS
        if slot not in slots:
            slots.add(slot)
            out.append(name)
        k += 1
    return out


def hold_first_write(group: GroupWriter, riders: int, before: Callable[[], None] = lambda: None):
    """Wrap the group's (real) write: the first one waits until ``riders`` bodies are queued
    behind it, then ``before()`` runs; so the next write carries all of them together."""
    real, first = group._write, [True]

    def gated(body: bytes) -> None:
        if first[0]:
            first[0] = False
            deadline = time.monotonic() + 20
            while group.pending() < riders and time.monotonic() < deadline:
                time.sleep(0.005)
            before()
        real(body)

    group._write = gated


def run_threads(fns: list[Callable[[], object]]) -> list[object]:
    """Run each fn in its own thread; its result or the exception it raised."""
    out: list[object] = [None] * len(fns)

    def one(k: int) -> None:
        try:
            out[k] = fns[k]()
        except Exception as e:
            out[k] = e

    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(fns))]
    for t in threads:
        t.start()
        time.sleep(0.02)  # the first one leads; the others queue behind it in order
    for t in threads:
        t.join(60)
    return out


def host_batch(host: str, t0: int, k: int):
    ts = [t0 + 2.0 * j for j in range(45)]
    return batch(host, ts, [float((j * (k + 3)) % 11) for j in range(45)])


def windows_of(store: InfluxStore, host: str, t0: int) -> list:
    found = store.query(Query(host, t0 - 60, t0 + 300, "30s", metric="m.x"))
    return [
        (w.time.tolist(), w.count.tolist(), w.mean.tolist()) for w in (s.windows for s in found)
    ]


def test_concurrent_hosts_share_one_write_and_each_gets_its_answer(influxd, tmp_path):
    """N requests of N hosts in flight together: one shared write carries N - 1 of them, each
    request returns its own window count, and what is stored equals writing each alone."""
    url = influxd.new_db_url()
    store = open_store(url, StoreOptions(90.0, RET, f"sqlite://{tmp_path}/m.db"))
    alone = open_store(influxd.new_db_url(), StoreOptions(90.0, RET, f"sqlite://{tmp_path}/a.db"))
    t0 = now30() - 300
    hosts = hosts_on_distinct_slots(N, "g")
    hold_first_write(store.group, N - 1)
    got = run_threads(
        [lambda k=k, h=h: store.write(host_batch(h, t0, k)) for k, h in enumerate(hosts)]
    )
    assert store.group.writes == 2  # the first alone, then the N - 1 queued behind it together
    for k, h in enumerate(hosts):
        assert got[k] == alone.write(host_batch(h, t0, k)) == 3
        assert windows_of(store, h, t0) == windows_of(alone, h, t0)
        assert store.host_state(h)[0].time == t0 + 88.0
    store.close()
    alone.close()


def test_a_failed_shared_write_fails_every_rider_and_stores_nothing(influxd, tmp_path):
    """influxd stops while N - 1 requests wait on the leader's write: every one of them fails
    (503), none is stored or counted as the newest sample; their retries store them all."""
    url = influxd.new_db_url()
    store = open_store(url, StoreOptions(90.0, RET, f"sqlite://{tmp_path}/m.db", timeout=2.0))
    t0 = now30() - 300
    hosts = hosts_on_distinct_slots(N, "f")
    hold_first_write(store.group, N - 1, before=influxd.stop)
    try:
        got = run_threads(
            [lambda k=k, h=h: store.write(host_batch(h, t0, k)) for k, h in enumerate(hosts)]
        )
    finally:
        influxd.start()
    assert all(isinstance(g, StorageUnavailable) for g in got), got
    assert store.group.writes == 2
    for h in hosts:
        assert windows_of(store, h, t0) == [([], [], [])]
        assert store.host_state(h) is None  # no newest sample: nothing was acknowledged
    for k, h in enumerate(hosts):
        assert store.write(host_batch(h, t0, k)) == 3
        assert windows_of(store, h, t0)[0][1] == [15, 15, 15]
    store.close()


def lines(measurement: str, host: str, field: str, t: int) -> bytes:
    return f"{measurement},host={host} mean={field} {t}\n".encode()


def test_a_refused_body_fails_alone_and_a_late_one_is_withdrawn(influxd):
    """A body influxd refuses (a field type conflict) fails only its own request: the shared
    write is retried body by body. A body still queued when its request's time is up is
    withdrawn and never written."""
    base, db, _ = parse_url(influxd.new_db_url())
    influxd.query(f'CREATE DATABASE "{db}" WITH DURATION 168h REPLICATION 1 NAME "{RP_30S}"')
    http = InfluxHTTP(base, 5.0)
    group = GroupWriter(lambda body: http.write(body, db, RP_30S, "s"))
    t = now30() - 300
    group.write(lines("m", "first", "1.0", t), 5.0)  # mean is a float field from now on
    hold_first_write(group, 4, before=lambda: time.sleep(0.5))  # the late one gives up
    bodies = [
        lines("m", "lead", "1.5", t),
        lines("m", "ok1", "2.5", t),
        lines("m", "bad", '"text"', t),
        lines("m", "ok2", "3.5", t),
    ]
    fns: list[Callable[[], object]] = [lambda b=b: group.write(b, 10.0) for b in bodies]
    fns.append(lambda: group.write(lines("m", "late", "4.5", t), 0.01))
    got = run_threads(fns)
    assert got[0] is None and got[1] is None and got[3] is None
    assert isinstance(got[2], RuntimeError) and "conflict" in str(got[2])
    assert isinstance(got[4], StorageUnavailable)
    res = influxd.query(f'SELECT "mean" FROM "{RP_30S}"."m" GROUP BY "host"', db=db)
    stored = {s["tags"]["host"]: s["values"][0][1] for s in res["results"][0]["series"]}
    assert stored == {"first": 1.0, "lead": 1.5, "ok1": 2.5, "ok2": 3.5}
    assert np.isfinite(list(stored.values())).all()
