"""The engine against an independent oracle: pandas resampling the held signal.

The held signal (each sample's value from its timestamp to the next sample, at most H, the last
one to its own window's end at most; the carry from its window's end to the first point) is cut
into pieces at every 30-second edge; ``resample("30s", label="right", closed="left",
origin="epoch")`` then groups them into the contract's windows. Nothing of the engine is used.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core import engine, state

W = 30
T0 = 1_763_892_000  # a multiple of 30


def held_pieces(ts: list[float], vals: list[float], carry, hold: float) -> pd.DataFrame:
    """The held signal as pieces (start, seconds, value), none crossing a window edge."""
    spans = []
    for i, (t, v) in enumerate(zip(ts, vals, strict=True)):
        own_end = (math.floor(t / W) + 1) * W
        nxt = ts[i + 1] if i + 1 < len(ts) else own_end
        spans.append((t, min(nxt, t + hold), v))
    if carry is not None:
        spans.append(((math.floor(carry[0] / W) + 1) * W, min(ts[0], carry[0] + hold), carry[1]))
    rows = []
    for a, b, v in spans:
        while a < b:
            edge = min(b, (math.floor(a / W) + 1) * W)
            rows.append((a, edge - a, v))
            a = edge
    df = pd.DataFrame(rows, columns=["start", "seconds", "value"])
    df["integral"] = df["seconds"] * df["value"]
    return df


def oracle(ts: list[float], vals: list[float], carry, hold: float) -> pd.DataFrame:
    """Finished windows by label: pandas groups pieces and samples into right-labelled windows."""
    pieces = held_pieces(ts, vals, carry, hold)
    pieces.index = pd.to_datetime(pieces["start"], unit="s")
    rule = {"rule": f"{W}s", "label": "right", "closed": "left", "origin": "epoch"}
    held = (
        pieces.sort_index()
        .resample(**rule)
        .agg({"seconds": "sum", "integral": "sum", "value": ["min", "max", "last"]})
    )
    held.columns = ["covered", "integral", "min", "max", "last"]
    samples = pd.Series(vals, index=pd.to_datetime(ts, unit="s"))
    sampled = samples.resample(**rule).agg(["count", "last"])
    sampled.columns = ["count", "last_sample"]
    out = held.join(sampled, how="outer")
    out = out[out["covered"] > 0].copy()
    # "last": the last sample's value when the window has samples, else the value held at its end
    has = out["count"].fillna(0) > 0
    out["last"] = np.where(has, out["last_sample"], out["last"])
    out["count"] = out["count"].fillna(0).astype(int)
    out["mean"] = out["integral"] / out["covered"]
    out.index = (out.index - pd.Timestamp(0)) // pd.Timedelta(seconds=1)
    return out[["mean", "min", "max", "last", "count", "covered", "integral"]]


def engine_windows(ts, vals, carry, hold) -> pd.DataFrame:
    ct = np.array([np.nan if carry is None else carry[0]])
    cv = np.array([np.nan if carry is None else carry[1]])
    s = engine.summarize(np.zeros(len(ts), np.int64), np.array(ts), np.array(vals), ct, cv, hold)
    return _frame(engine.finalize(s, hold))


def _frame(w) -> pd.DataFrame:
    df = pd.DataFrame({f: getattr(w, f) for f in engine.FINAL_FIELDS}, index=w.time)
    return df[df["covered"] > 0]


def assert_same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert got.index.tolist() == want.index.tolist()
    assert got["count"].tolist() == want["count"].tolist()
    for f in ("mean", "min", "max", "last", "covered", "integral"):
        assert np.allclose(got[f], want[f], rtol=1e-9, atol=1e-9), f


@st.composite
def runs(draw):
    """A series' samples (quarter-second timestamps: exact in binary), a carry, a hold."""
    gaps = draw(st.lists(st.integers(1, 4 * 200), min_size=1, max_size=40))
    ts = (T0 + draw(st.integers(0, 4 * 60)) / 4 + np.cumsum(gaps) / 4).tolist()
    vals = draw(st.lists(st.floats(-1e6, 1e6), min_size=len(ts), max_size=len(ts)))
    carry = None
    if draw(st.booleans()):
        carry = (ts[0] - draw(st.integers(1, 4 * 150)) / 4, draw(st.floats(-1e6, 1e6)))
    hold = draw(st.sampled_from([30.0, 45.5, 90.0, 120.0]))
    return ts, vals, carry, hold


def test_golden_example_through_the_oracle():
    ts = [T0 + x for x in (0, 2, 5, 6, 7, 10, 14, 20, 25, 28)] + [T0 + 30]
    vals = [0, 12, 32, 48, 28, 24, 28, 32, 36, 28, 0]
    got = oracle(ts, vals, None, 90.0).loc[T0 + 30]
    assert got["mean"] == 788 / 30 and got["covered"] == 30


@settings(max_examples=300, deadline=None)
@given(runs())
def test_engine_equals_the_pandas_oracle(run):
    ts, vals, carry, hold = run
    assert_same(engine_windows(ts, vals, carry, hold), oracle(ts, vals, carry, hold))


@settings(max_examples=150, deadline=None)
@given(runs(), st.data())
def test_batches_merged_in_any_order_equal_the_oracle(run, data):
    """Split into consecutive batches (each carrying the previous one's last sample), stored in
    a random order with a retry: the merged windows are the oracle's."""
    ts, vals, carry, hold = run
    cuts = (
        sorted(set(data.draw(st.lists(st.integers(1, len(ts) - 1), max_size=4))))
        if len(ts) > 1
        else []
    )
    bounds = [0, *cuts, len(ts)]
    parts = []
    for a, b in itertools.pairwise(bounds):
        c = carry if a == 0 else (ts[a - 1], vals[a - 1])
        ct, cv = (
            np.array([np.nan if c is None else c[0]]),
            np.array([np.nan if c is None else c[1]]),
        )
        parts.append(
            engine.summarize(
                np.zeros(b - a, np.int64), np.array(ts[a:b]), np.array(vals[a:b]), ct, cv, hold
            )
        )
    order = data.draw(st.permutations(range(len(parts))))
    stored: dict = {}
    for i in [*order, order[0]]:
        a, b = bounds[i], bounds[i + 1]
        pts = state.Points(np.zeros(b - a, np.int64), np.array(ts[a:b]), np.array(vals[a:b]))
        _, states = state.merge_into(parts[i], stored, pts, hold)
        for j, st_ in enumerate(states):
            stored[(0, int(parts[i].label[j]))] = st_
    keys = sorted(stored)
    merged = engine.Summaries.from_rows(
        [k[0] for k in keys], [k[1] for k in keys], [state.collapse(stored[k], hold) for k in keys]
    )
    assert_same(_frame(engine.finalize(merged, hold)), oracle(ts, vals, carry, hold))
