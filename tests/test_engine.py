"""The aggregation engine against the contract: golden example, a brute-force reference, and
the split / retry / order invariance the stored state is designed for."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core import engine, state

T0 = 1_763_892_000  # a multiple of 30


def one_series(ts, vals, carry=None, hold=engine.DEFAULT_HOLD):
    """Summaries of a single-series batch."""
    ct = np.array([np.nan if carry is None else carry[0]])
    cv = np.array([np.nan if carry is None else carry[1]])
    return engine.summarize(
        np.zeros(len(ts), dtype=np.int64),
        np.asarray(ts, float),
        np.asarray(vals, float),
        ct,
        cv,
        hold,
    )


def as_dict(s: engine.Summaries, hold=engine.DEFAULT_HOLD) -> dict[int, dict[str, float]]:
    """Label -> finished fields, only the rows a store would keep (covered > 0)."""
    w = engine.finalize(s, hold)
    out = {}
    for i in range(len(s)):
        if w.covered[i] > 0:
            out[int(s.label[i])] = {f: float(getattr(w, f)[i]) for f in engine.FINAL_FIELDS}
    return out


def reference(ts, vals, carry, hold):
    """Brute force, straight from the contract's words: hold intervals, then overlaps."""
    intervals = []  # (start, end, value)
    n = len(ts)
    for i in range(n):
        own_end = (math.floor(ts[i] / 30) + 1) * 30
        nxt = ts[i + 1] if i + 1 < n else own_end
        intervals.append((ts[i], min(nxt, ts[i] + hold), vals[i]))
    if carry is not None:
        c_end = (math.floor(carry[0] / 30) + 1) * 30
        intervals.append((c_end, min(ts[0], carry[0] + hold), carry[1]))
    labels = set()
    for a, b, _ in intervals:
        if b > a:
            for w in range(math.floor(a / 30), math.ceil(b / 30)):
                labels.add((w + 1) * 30)
    for t in ts:
        labels.add((math.floor(t / 30) + 1) * 30)
    out = {}
    for lab in sorted(labels):
        s, e = lab - 30, lab
        cov = integ = 0.0
        seen = []
        for a, b, v in intervals:
            ov = min(b, e) - max(a, s)
            if ov > 0:
                cov += ov
                integ += ov * v
                seen.append(v)
        inside = [(t, v) for t, v in zip(ts, vals, strict=True) if s <= t < e]
        seen += [v for _, v in inside]
        if cov <= 0:
            continue
        if inside:
            last = inside[-1][1]
        else:
            last = max((a, v) for a, b, v in intervals if min(b, e) - max(a, s) > 0)[1]
        out[lab] = {
            "mean": integ / cov,
            "min": min(seen),
            "max": max(seen),
            "last": last,
            "count": len(inside),
            "covered": cov,
            "integral": integ,
        }
    return out


def assert_same(got, want, scale=1.0):
    assert sorted(got) == sorted(want)
    for lab in want:
        for f in engine.FINAL_FIELDS:
            tol = 1e-9 * max(1.0, scale) * (30 if f == "integral" else 1)
            assert math.isclose(got[lab][f], want[lab][f], rel_tol=1e-9, abs_tol=tol), (
                lab,
                f,
                got[lab][f],
                want[lab][f],
            )


def test_golden_worked_example():
    """The contract's worked example: 788 / 30 over a fully covered window."""
    offs = [0, 2, 5, 6, 7, 10, 14, 20, 25, 28]
    vals = [0, 12, 32, 48, 28, 24, 28, 32, 36, 28]
    ts = [T0 + o for o in offs] + [T0 + 30]
    got = as_dict(one_series(ts, [*vals, 28]))
    w = got[T0 + 30]
    assert w["covered"] == 30
    assert w["integral"] == 788
    assert w["mean"] == pytest.approx(788 / 30, rel=1e-12)
    assert (w["min"], w["max"], w["last"], w["count"]) == (0, 48, 28, 10)


def test_golden_split_over_batches_any_order():
    """The worked example split in three batches with carries, stored in reverse order."""
    offs = [0, 2, 5, 6, 7, 10, 14, 20, 25, 28]
    vals = [0, 12, 32, 48, 28, 24, 28, 32, 36, 28]
    ts = [T0 + o for o in offs]
    parts = [(0, 3), (3, 7), (7, 10)]
    store: dict = {}
    for a, b in reversed(parts):
        carry = (ts[a - 1], vals[a - 1]) if a else None
        apply(store, ts[a:b], vals[a:b], carry)
    w = finished(store)[T0 + 30]
    assert w["integral"] == pytest.approx(788)
    assert w["covered"] == pytest.approx(30)
    assert w["count"] == 10


def test_held_value_fills_empty_windows():
    """A series sampled every 60 s still has every 30-second window (count 0)."""
    ts = [T0 + 60 * k for k in range(4)]
    got = as_dict(one_series(ts, [1, 2, 3, 4]))
    assert sorted(got) == [T0 + 30 * k for k in range(1, 8)]
    assert got[T0 + 60] == {
        "mean": 1,
        "min": 1,
        "max": 1,
        "last": 1,
        "count": 0,
        "covered": 30,
        "integral": 30,
    }
    assert got[T0 + 210]["covered"] == 30  # the newest sample holds to its window's end


def test_hold_limit_leaves_gaps_uncovered():
    """Past H seconds a value no longer holds: windows beyond it are not written."""
    got = as_dict(one_series([T0, T0 + 300], [5, 7], hold=90))
    assert sorted(got) == [T0 + 30, T0 + 60, T0 + 90, T0 + 330]
    assert got[T0 + 90]["covered"] == 30
    assert got[T0 + 330]["covered"] == 30


def test_carry_covers_from_its_window_end_only():
    carry = (T0 + 25, 10.0)
    got = as_dict(one_series([T0 + 70], [20.0], carry=carry))
    # The carry's own window is untouched; [30, 60) held fully; [60, 70) held in the next.
    assert T0 + 30 not in got
    assert got[T0 + 60] == pytest.approx(
        {"mean": 10, "min": 10, "max": 10, "last": 10, "count": 0, "covered": 30, "integral": 300}
    )
    w = got[T0 + 90]
    assert w["integral"] == pytest.approx(10 * 10 + 20 * 20)
    assert (w["min"], w["max"], w["count"]) == (10, 20, 1)


def test_carry_in_same_window_changes_nothing_there():
    got = as_dict(one_series([T0 + 20], [4.0], carry=(T0 + 10, 100.0)))
    assert got[T0 + 30] == pytest.approx(
        {"mean": 4, "min": 4, "max": 4, "last": 4, "count": 1, "covered": 10, "integral": 40}
    )


def test_several_series_in_one_batch_are_independent():
    sid = np.array([0, 0, 1, 1])
    ts = np.array([T0 + 1, T0 + 31, T0 + 1, T0 + 2], float)
    val = np.array([1, 2, 10, 20], float)
    s = engine.summarize(sid, ts, val, np.array([np.nan, T0 - 5.0]), np.array([np.nan, 7.0]))
    assert list(zip(s.sid.tolist(), s.label.tolist(), strict=True)) == [
        (0, T0 + 30),
        (0, T0 + 60),
        (1, T0 + 30),
    ]
    w = engine.finalize(s)
    assert w.integral[2] == pytest.approx(7 * 1 + 10 * 1 + 20 * 28)


def test_downsample_is_time_weighted_and_right_labelled():
    labels = np.array([T0 + 30, T0 + 60, T0 + 1800, T0 + 1830], dtype=np.int64)
    out = engine.downsample(
        labels,
        wmin=np.array([1.0, 2, 3, 4]),
        wmax=np.array([5.0, 6, 7, 8]),
        last=np.array([1.0, 2, 3, 4]),
        count=np.array([1, 1, 1, 1]),
        covered=np.array([30.0, 10, 30, 30]),
        integral=np.array([30.0, 100, 90, 120]),
    )
    assert out["label"].tolist() == [T0 + 1800, T0 + 3600]
    assert out["mean"][0] == pytest.approx((30 + 100 + 90) / 70)
    assert out["last"].tolist() == [3, 4]
    assert out["min"].tolist() == [1, 4]


# ---- properties -----------------------------------------------------------------------------


def apply(store: dict, ts, vals, carry=None, hold=engine.DEFAULT_HOLD) -> None:
    """What a store does with a batch: merge with what it has for the same windows."""
    s = one_series(ts, vals, carry, hold)
    pts = state.Points(np.zeros(len(ts), np.int64), np.asarray(ts, float), np.asarray(vals, float))
    keys = list(zip(s.sid.tolist(), s.label.tolist(), strict=True))
    _, states = state.merge_into(s, {k: store[k] for k in keys if k in store}, pts, hold)
    store.update(zip(keys, states, strict=True))


def finished(store: dict, hold=engine.DEFAULT_HOLD) -> dict:
    keys = sorted(store)
    s = engine.Summaries.from_rows(
        [k[0] for k in keys], [k[1] for k in keys], [state.collapse(store[k], hold) for k in keys]
    )
    return as_dict(s, hold)


@st.composite
def sample_runs(draw):
    n = draw(st.integers(1, 40))
    gaps = draw(
        st.lists(
            st.one_of(
                st.floats(0.001, 10),
                st.floats(10, 200),
                st.integers(1, 40).map(float),
            ),
            min_size=n,
            max_size=n,
        )
    )
    start = T0 + draw(st.floats(0, 60))
    ts = list(np.cumsum([start - T0, *gaps[1:]]) + T0)
    vals = draw(st.lists(st.floats(-1e6, 1e6), min_size=n, max_size=n))
    carry = draw(st.one_of(st.none(), st.tuples(st.floats(0.001, 150), st.floats(-1e6, 1e6))))
    if carry is not None:
        carry = (ts[0] - carry[0], carry[1])
    hold = draw(st.sampled_from([90.0, 45.0, 30.0, 120.0, 10.0, 0.5]))
    return ts, vals, carry, hold


@settings(max_examples=300, deadline=None)
@given(sample_runs())
def test_matches_brute_force_reference(run):
    ts, vals, carry, hold = run
    scale = max(1.0, *(abs(v) for v in vals), abs(carry[1]) if carry else 0)
    assert_same(
        as_dict(one_series(ts, vals, carry, hold), hold), reference(ts, vals, carry, hold), scale
    )


@settings(max_examples=300, deadline=None)
@given(sample_runs(), st.data())
def test_split_retry_and_order_give_the_same_stored_points(run, data):
    ts, vals, carry, hold = run
    n = len(ts)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, n - 1)), max_size=6)) - {n})
    bounds = list(zip([0, *cuts], [*cuts, n], strict=True))
    batches = []
    for a, b in bounds:
        c = carry if a == 0 else (ts[a - 1], vals[a - 1])
        batches.append((ts[a:b], vals[a:b], c))
    order = data.draw(st.permutations(range(len(batches))))
    retries = data.draw(st.lists(st.integers(0, len(batches) - 1), max_size=3))
    store: dict = {}
    for i in [*order, *retries]:
        apply(store, *batches[i], hold)
    scale = max(1.0, *(abs(v) for v in vals), abs(carry[1]) if carry else 0)
    assert_same(finished(store, hold), as_dict(one_series(ts, vals, carry, hold), hold), scale)


def test_rechunked_resend_counts_each_sample_once():
    """The contract's minimal case (section 4): the same samples cut differently, either order."""
    a = ([T0 + 1, T0 + 2], [1.0, 2.0], None)
    b = ([T0 + 2, T0 + 3], [2.0, 3.0], (T0 + 1, 1.0))
    for order in ((a, b), (b, a)):
        store: dict = {}
        for batch in order:
            apply(store, *batch)
        w = finished(store)[T0 + 30]
        assert (w["count"], w["covered"], w["min"]) == (3, 29, 1)
        assert w["mean"] == pytest.approx(84 / 29, rel=1e-12)


@st.composite
def rechunks(draw, n: int):
    """Contiguous runs of 0..n-1 whose union is every index, overlapping at random."""
    runs = []
    covered = 0
    while covered < n:
        a = draw(st.integers(max(0, covered - 5), covered))
        b = draw(st.integers(covered + 1, n))
        runs.append((a, b))
        covered = b
    runs += draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, n)), max_size=3))
    return [(a, b) for a, b in runs if a < b]


@settings(max_examples=300, deadline=None)
@given(sample_runs(), st.data())
def test_overlapping_rechunks_in_any_order_equal_one_batch(run, data):
    """Re-batched resends (contiguous runs overlapping without being equal), in any order,
    each with its carry: the stored points are one batch's."""
    ts, vals, carry, hold = run
    chunks = data.draw(rechunks(len(ts)))
    order = data.draw(st.permutations(chunks))
    store: dict = {}
    for a, b in order:
        c = carry if a == 0 else (ts[a - 1], vals[a - 1])
        apply(store, ts[a:b], vals[a:b], c, hold)
    scale = max(1.0, *(abs(v) for v in vals), abs(carry[1]) if carry else 0)
    assert_same(finished(store, hold), as_dict(one_series(ts, vals, carry, hold), hold), scale)
