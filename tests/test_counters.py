"""The counter algebra (contract section 8): rates from consecutive raw samples, any batching."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from app.ingest.counters import RawCounters, empty_batch, rate_unit, rates

NAN = np.array([math.nan])


def _feed(t, v, start=None) -> RawCounters:
    t, v = np.asarray(t, float), np.asarray(v, float)
    s = np.full(len(t), math.nan) if start is None else np.asarray(start, float)
    return RawCounters([("c.rate", ())], ["/s"], np.zeros(len(t), np.int64), t, v, s)


def test_rates_of_consecutive_samples_with_a_reset() -> None:
    t, v, s = np.array([0.0, 10, 20, 30]), np.array([5.0, 25, 10, 40]), np.full(4, math.nan)
    rt, rv, last = rates(t, v, s, None)
    assert rt.tolist() == [0, 10, 20]
    assert rv.tolist() == [2.0, 1.0, 3.0]  # 20/10, reset: 10/10, 30/10
    assert last[:2] == (30.0, 40.0) and math.isnan(last[2])


def test_the_first_sample_gives_no_rate_and_the_next_batch_continues() -> None:
    rt, _, last = rates(np.array([0.0]), np.array([1.0]), NAN, None)
    assert len(rt) == 0 and last[:2] == (0.0, 1.0)
    rt, rv, last = rates(np.array([5.0]), np.array([11.0]), NAN, last)
    assert rt.tolist() == [0.0] and rv.tolist() == [2.0]


def test_a_changed_otlp_start_is_a_reset_even_when_the_value_grows() -> None:
    t, v, s = np.array([10.0, 20]), np.array([5.0, 8]), np.array([1.0, 15])
    _, rv, _ = rates(t, v, s, None)
    assert rv.tolist() == [0.8]


def test_a_resend_of_seen_samples_adds_nothing() -> None:
    _, _, last = rates(np.array([0.0, 10, 20]), np.array([0.0, 1, 2]), np.full(3, math.nan), None)
    rt, _, again = rates(np.array([0.0, 10, 20]), np.array([0.0, 1, 2]), np.full(3, math.nan), last)
    assert len(rt) == 0 and again[:2] == last[:2] == (20.0, 2.0)


def test_units() -> None:
    assert rate_unit("J") == "W" and rate_unit("joules") == "W"
    assert rate_unit("bytes") == "bytes/s" and rate_unit(None) == "/s"


@st.composite
def counter_runs(draw):
    n = draw(st.integers(2, 40))
    gaps = draw(st.lists(st.floats(0.5, 60), min_size=n - 1, max_size=n - 1))
    t = np.concatenate([[1000.0], 1000.0 + np.cumsum(gaps)])
    steps = draw(st.lists(st.floats(0, 1e6), min_size=n, max_size=n))
    resets = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    v, cur = [], 0.0
    for step, reset in zip(steps, resets, strict=True):
        cur = step if reset else cur + step
        v.append(cur)
    cuts = sorted(set(draw(st.lists(st.integers(1, n - 1), max_size=6))))
    resend = draw(st.lists(st.integers(0, 3), min_size=len(cuts) + 1, max_size=len(cuts) + 1))
    return t, np.array(v), [0, *cuts, n], resend


@settings(max_examples=200, deadline=None)
@given(counter_runs())
def test_integral_of_rates_is_the_increase_for_any_batching(run) -> None:
    """Batches cut anywhere, each possibly resent with some of the previous batch's samples:
    the stored rate samples (one per time) integrate to the counter's total increase."""
    t, v, bounds, resend = run
    kept, stored = [None], {}
    for k in range(len(bounds) - 1):
        lo = max(0, bounds[k] - resend[k])  # a resend overlapping the samples seen before
        feed = _feed(t[lo : bounds[k + 1]], v[lo : bounds[k + 1]])
        batch, kept = feed.apply(empty_batch("h"), kept)
        for ts, val in zip(batch.ts.tolist(), batch.val.tolist(), strict=True):
            assert stored.setdefault(ts, val) == val  # a rate never changes once computed
    times = sorted(stored)
    assert times == t[:-1].tolist()  # one rate per raw sample but the newest
    nxt = dict(zip(t[:-1].tolist(), t[1:].tolist(), strict=True))
    integral = math.fsum(stored[x] * (nxt[x] - x) for x in times)
    increase = math.fsum(np.where(v[1:] < v[:-1], v[1:], v[1:] - v[:-1]))
    assert math.isclose(integral, increase, rel_tol=1e-9, abs_tol=1e-6)


@settings(max_examples=100, deadline=None)
@given(st.lists(counter_runs(), min_size=1, max_size=4), st.lists(st.booleans(), max_size=4))
def test_the_vectorised_apply_is_the_scalar_rates_per_counter(runs, kept_before) -> None:
    """Several counters at once, some with a kept sample: ``apply`` gives each one ``rates``."""
    ts, vals, sids, last = [], [], [], []
    for k, (t, v, _, _) in enumerate(runs):
        cut = 1 if k < len(kept_before) and kept_before[k] else 0
        last.append((float(t[0]), float(v[0]), math.nan) if cut else None)
        ts.append(t)
        vals.append(v)
        sids.append(np.full(len(t), k))
    keys = [(f"c{k}.rate", ()) for k in range(len(runs))]
    feed = RawCounters(
        keys,
        ["/s"] * len(runs),
        np.concatenate(sids).astype(np.int64),
        np.concatenate(ts),
        np.concatenate(vals),
        np.full(sum(map(len, ts)), math.nan),
    )
    batch, kept = feed.apply(empty_batch("h"), last)
    for k in range(len(runs)):
        rt, rv, newest = rates(ts[k], vals[k], np.full(len(ts[k]), math.nan), last[k])
        mine = [i for i, key in enumerate(batch.keys) if key == keys[k]]
        got = batch.sid == (mine[0] if mine else -1)
        assert batch.ts[got].tolist() == rt.tolist() and batch.val[got].tolist() == rv.tolist()
        assert kept[k][:2] == newest[:2]
