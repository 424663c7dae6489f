"""30-minute windows computed from 30-second ones, for the windows no refresh has reached yet:
the hours the refresh has not finished with, and the windows marked late."""

from __future__ import annotations

import math

import numpy as np

from app.core import engine
from app.core.records import Windows

FRESH = 2 * 3600.0  # a refresh re-covers the last hour every 15 minutes: younger may be stale


def downsample(w: Windows, period: int = engine.WINDOW_30M) -> Windows:
    """One series' windows (sorted) rolled into right-labelled windows of ``period`` seconds,
    time-weighted (sum of integrals over sum of covered seconds)."""
    d = engine.downsample(w.time, w.min, w.max, w.last, w.count, w.covered, w.integral, period)
    return Windows(
        d["label"].astype(np.int64),
        d["mean"],
        d["min"],
        d["max"],
        d["last"],
        d["count"].astype(np.int64),
        d["covered"],
        d["integral"],
    )


def overlay(stored: Windows, computed: Windows, labels: set[int]) -> Windows:
    """``stored`` with the windows at ``labels`` replaced by ``computed`` ones where it has them."""
    fresh = np.isin(computed.time, np.fromiter(labels, dtype=np.int64, count=len(labels)))
    computed = computed.take(np.flatnonzero(fresh))
    keep = np.flatnonzero(~np.isin(stored.time, computed.time))
    both = [stored.take(keep), computed]
    cols = {f: np.concatenate([getattr(x, f) for x in both]) for f in stored.__dict__}
    order = np.argsort(cols["time"], kind="stable")
    return Windows(**{f: c[order] for f, c in cols.items()})


def fresh_labels(start: float, end: float, now: float) -> set[int]:
    """The 30-minute labels in (start, end] that the refresh may not have finished."""
    first = max(start, now - FRESH)
    lo = math.floor(first / engine.WINDOW_30M) + 1
    hi = math.floor(end / engine.WINDOW_30M)
    return {k * engine.WINDOW_30M for k in range(lo, hi + 1)}
