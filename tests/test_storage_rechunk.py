"""Exactness of the stored state on every store (contract sections 4 and 8): the same samples
re-batched into contiguous runs that overlap without being equal, written in any order, with a
carry (JSON) or without one (the store's carry and the tails of out-of-order batches), give the
points of one batch holding every sample."""

from __future__ import annotations

import itertools
import math
import uuid

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.records import Batch, Query
from tests.conftest import now30

T0 = now30() - 3 * 3600
KEYS = [("rc.value", ()), ("rc.other", (("k", "v"),))]


def batch(host: str, k: int, ts, vals, carry, server_carry: bool) -> Batch:
    n = len(ts)
    ct, cv = [math.nan, math.nan], [math.nan, math.nan]
    if carry is not None:
        ct[0], cv[0] = carry
    return Batch(
        host, [KEYS[k]], [None], np.zeros(n, np.int64), np.asarray(ts, float),
        np.asarray(vals, float), np.array(ct[:1]), np.array(cv[:1]), server_carry,
    )  # fmt: skip


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


@st.composite
def series(draw):
    n = draw(st.integers(1, 25))
    gaps = draw(st.lists(st.sampled_from([0.5, 1.0, 7.0, 29.0, 31.0, 61.0, 100.0]), min_size=n,
                         max_size=n))  # fmt: skip
    ts = (T0 + draw(st.floats(0, 59)) + np.cumsum([0.0, *gaps[1:]])).tolist()
    vals = draw(st.lists(st.integers(-50, 50).map(float), min_size=n, max_size=n))
    return ts, vals


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


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(series(), min_size=1, max_size=2), st.booleans(), st.data())
def test_rechunked_batches_in_any_order_equal_one_batch(app, seqs, with_carry, data):
    store = app.extensions["fleetpulse"].store
    host, ref = f"rc-{uuid.uuid4().hex[:10]}", f"ref-{uuid.uuid4().hex[:10]}"
    parts = []
    for k, (ts, vals) in enumerate(seqs):
        store.write(batch(ref, k, ts, vals, None, not with_carry))
        for a, b in data.draw(runs_of(len(ts))):
            carry = (ts[a - 1], vals[a - 1]) if with_carry and a else None
            parts.append((k, ts[a:b], vals[a:b], carry))
    for k, ts, vals, carry in data.draw(st.permutations(parts)):
        store.write(batch(host, k, ts, vals, carry, not with_carry))
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
            store.write(batch(host, 0, ts, vals, carry, False))
        mean, vmin, _, _, covered, count = stored(store, host)[("rc.value", T0 + 30)]
        assert (count, covered, vmin) == (3, 29, 1)
        assert math.isclose(mean, 84 / 29, rel_tol=1e-12)
