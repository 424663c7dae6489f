"""Exactness of the stored state on every store (contract sections 4 and 8): the same samples
re-batched into contiguous runs that overlap without being equal, written in any order, with a
carry (JSON) or without one (the store's carry and the tails of out-of-order batches), give the
points of one batch holding every sample."""

from __future__ import annotations

import itertools
import math
import uuid

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.records import Batch, Query
from app.storage import StoreOptions, open_store
from tests.conftest import now30

T0 = now30() - 3 * 3600
KEYS = [("rc.value", ()), ("rc.other", (("k", "v"),)), ("rc.third", (("k", "w"),))]


def batch(host: str, pieces: list[tuple], server_carry: bool) -> Batch:
    """One request holding one run per series: pieces of (series index, ts, vals, carry)."""
    pieces = sorted(pieces, key=lambda p: p[0])
    carries = [p[3] or (math.nan, math.nan) for p in pieces]
    return Batch(
        host, [KEYS[p[0]] for p in pieces], [None] * len(pieces),
        np.repeat(np.arange(len(pieces)), [len(p[1]) for p in pieces]),
        np.concatenate([p[1] for p in pieces]).astype(float),
        np.concatenate([p[2] for p in pieces]).astype(float),
        np.array([c[0] for c in carries]), np.array([c[1] for c in carries]), server_carry,
    )  # fmt: skip


@pytest.fixture
def store_with_hold(storage_url: str, tmp_path):
    """Stores on the parametrized backend, one per hold limit, closed after the test."""
    opened: dict = {}

    def get(hold: float):
        if hold not in opened:
            meta = str(tmp_path / f"meta-{hold}.db")
            opened[hold] = open_store(
                storage_url, StoreOptions(hold=hold, metadata_url=f"sqlite://{meta}")
            )
        return opened[hold]

    yield get
    for store in opened.values():
        store.close()


def stored(store, host: str) -> dict:
    out = {}
    for sp in store.query(Query(host, T0 - 600, T0 + 4 * 3600, "30s")):
        w = sp.windows
        for i, t in enumerate(w.time.tolist()):
            out[(sp.metric, t)] = [
                float(getattr(w, f)[i]) for f in ("mean", "min", "max", "last", "covered")
            ] + [int(w.count[i])]
    return out


def assert_same(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for key, fields in want.items():
        for a, b in zip(got[key], fields, strict=True):
            assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6), (key, got[key], fields)


GAPS = [0.5, 1, 5, 7.5, 15, 29, 30, 31, 45, 60, 61, 90, 100, 200]
HOLDS = [5, 7.5, 29, 30, 31, 45, 90, 100]


@st.composite
def runs_of(draw, n: int):
    """Contiguous runs of 0..n-1 covering every index, overlapping at random, plus repeats."""
    out, covered = [], 0
    while covered < n:
        a = draw(st.integers(max(0, covered - 4), covered))
        b = draw(st.integers(covered + 1, min(n, covered + 8)))
        out.append((a, b))
        covered = b
    extra = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, n)), max_size=2))
    return out + [(a, b) for a, b in extra if a < b]


@st.composite
def scenario(draw):
    """Up to three series (starts on and near window edges, gaps around the hold), cut into
    overlapping runs, the runs packed into requests of at most one run per series, shuffled."""
    hold = float(draw(st.sampled_from(HOLDS)))
    carry = draw(st.booleans())
    seqs = []
    for _ in range(draw(st.integers(1, len(KEYS)))):
        n = draw(st.integers(1, 12))
        start = draw(st.sampled_from([0, 0.5, 15, 29.5, 30, 59]))
        gaps = draw(st.lists(st.sampled_from(GAPS), min_size=n - 1, max_size=n - 1))
        vals = draw(st.lists(st.integers(-9, 9).map(float), min_size=n, max_size=n))
        seqs.append(((T0 + start + np.cumsum([0.0, *gaps])).tolist(), vals))
    pieces = [
        (k, ts[a:b], v[a:b], (ts[a - 1], v[a - 1]) if carry and a else None)
        for k, (ts, v) in enumerate(seqs)
        for a, b in draw(runs_of(len(ts)))
    ]
    requests: list[list] = []
    for p in draw(st.permutations(pieces)):
        free = [i for i, r in enumerate(requests) if all(q[0] != p[0] for q in r)]
        j = draw(st.sampled_from([-1, *free]))
        requests.append([p]) if j == -1 else requests[j].append(p)
    return hold, seqs, carry, requests


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(scenario())
def test_rechunked_batches_in_any_order_equal_one_batch(store_with_hold, case):
    hold, seqs, carry, requests = case
    store = store_with_hold(hold)
    host, ref = f"rc-{uuid.uuid4().hex[:10]}", f"ref-{uuid.uuid4().hex[:10]}"
    store.write(batch(ref, [(k, ts, v, None) for k, (ts, v) in enumerate(seqs)], not carry))
    for pieces in requests:
        store.write(batch(host, pieces, not carry))
    assert_same(stored(store, host), stored(store, ref))


def test_the_minimal_rechunk_case_on_every_store(app):
    """Contract section 4's example: A = (s+1, 1), (s+2, 2); B = carry (s+1, 1), points
    (s+2, 2), (s+3, 3); stored in either order: count 3, covered 29, min 1, mean 84/29."""
    store = app.extensions["fleetpulse"].store
    a = ([T0 + 1, T0 + 2], [1.0, 2.0], None)
    b = ([T0 + 2, T0 + 3], [2.0, 3.0], (T0 + 1, 1.0))
    for order in itertools.permutations((a, b)):
        host = f"rc-{uuid.uuid4().hex[:10]}"
        for ts, vals, carry in order:
            store.write(batch(host, [(0, ts, vals, carry)], False))
        mean, vmin, _, _, covered, count = stored(store, host)[("rc.value", T0 + 30)]
        assert (count, covered, vmin) == (3, 29, 1)
        assert math.isclose(mean, 84 / 29, rel_tol=1e-12)
