"""A window's mergeable state and its algebra: merge is commutative, associative, idempotent.

See DESIGN.md ("Aggregation semantics"): the head plus one segment per batch that touched the
window; gaps between segments are filled only when finishing, so pieces may arrive in any order.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from app.core.engine import DEFAULT_HOLD, WINDOW, Summaries, Summary


class State(NamedTuple):
    """A window's stored, mergeable state: the head and the disjoint segments, in time order.

    Each segment is the summary of one batch's points inside the window (its ``prev_*`` zeroed).
    Gaps between segments are filled only when finishing, so pieces may arrive in any order.
    """

    prev_ts: float
    prev_val: float
    segs: tuple[Summary, ...]


def state_of(row: Summary) -> State:
    """The state a single batch leaves in a window."""
    seg = (row._replace(prev_ts=0.0, prev_val=0.0),) if row.n > 0 else ()
    return State(row.prev_ts, row.prev_val, seg)


def merge(a: State, b: State) -> State:
    """Combine two states of one window: commutative, associative and idempotent."""
    heads = [(s.prev_ts, s.prev_val) for s in (a, b) if not math.isnan(s.prev_ts)]
    prev_ts, prev_val = max(heads) if heads else (math.nan, math.nan)
    segs: list[Summary] = []
    for seg in sorted(set(a.segs) | set(b.segs), key=_seg_rank, reverse=True):
        # Overlapping spans that are not the same segment come from samples re-chunked
        # differently; summaries cannot reconcile them, so the fuller one wins, deterministically.
        if all(seg.last_ts < o.first_ts or o.last_ts < seg.first_ts for o in segs):
            segs.append(seg)
    return State(prev_ts, prev_val, tuple(sorted(segs, key=lambda s: s.first_ts)))


def _seg_rank(s: Summary) -> tuple:
    return (s.n, s.last_ts - s.first_ts, *s)


def collapse(state: State, hold: float = DEFAULT_HOLD) -> Summary:
    """One summary for ``finalize``: segments joined, each gap held by the earlier last value."""
    if not state.segs:
        nan = math.nan
        return Summary(0, nan, nan, nan, nan, 0.0, 0.0, nan, nan, state.prev_ts, state.prev_val)
    lo = state.segs[0]
    n, inner_int, inner_cov = lo.n, lo.inner_int, lo.inner_cov
    vmin, vmax = lo.vmin, lo.vmax
    for hi in state.segs[1:]:
        gap = min(hi.first_ts - lo.last_ts, hold)
        n += hi.n
        inner_int += lo.last_val * gap + hi.inner_int
        inner_cov += gap + hi.inner_cov
        vmin, vmax = min(vmin, hi.vmin), max(vmax, hi.vmax)
        lo = hi
    first = state.segs[0]
    return Summary(
        n,
        first.first_ts,
        first.first_val,
        lo.last_ts,
        lo.last_val,
        inner_int,
        inner_cov,
        vmin,
        vmax,
        state.prev_ts,
        state.prev_val,
    )


def absorb(old: State, row: Summary, ts: np.ndarray, val: np.ndarray, hold: float) -> State:
    """A stored state plus a batch's own samples in the window (``ts``, ``val``).

    A stored segment holds every sample of its run (a sender's batch is a contiguous run of
    its samples), so new samples inside a segment's span are already counted; the others form
    new segments, cut wherever a stored segment lies between them. Exact for re-chunked resends
    that overlap without being equal, in any order.
    """
    heads = [(s.prev_ts, s.prev_val) for s in (old, state_of(row)) if not math.isnan(s.prev_ts)]
    prev_ts, prev_val = max(heads) if heads else (math.nan, math.nan)
    firsts = np.array([s.first_ts for s in old.segs])
    lasts = np.array([s.last_ts for s in old.segs])
    # For each sample: the stored segments starting at or before it, and ending before it.
    started = np.searchsorted(np.sort(firsts), ts, side="right")
    ended = np.searchsorted(np.sort(lasts), ts, side="left")
    fresh = started == ended  # no stored span contains the sample
    segs = list(old.segs)
    idx = np.flatnonzero(fresh)
    if len(idx):
        cut = np.flatnonzero(np.diff(started[idx]) != 0) + 1  # a stored segment in between
        for run in np.split(idx, cut):
            segs.append(segment(ts[run], val[run], hold))
    return State(prev_ts, prev_val, tuple(sorted(segs, key=lambda s: s.first_ts)))


def segment(ts: np.ndarray, val: np.ndarray, hold: float) -> Summary:
    """The segment of one run of samples (strictly increasing ``ts``) inside one window."""
    dt = np.minimum(np.diff(ts), hold)
    return Summary(
        len(ts),
        float(ts[0]),
        float(val[0]),
        float(ts[-1]),
        float(val[-1]),
        float(np.dot(dt, val[:-1])),
        float(dt.sum()),
        float(val.min()),
        float(val.max()),
        0.0,
        0.0,
    )


class Points(NamedTuple):
    """A batch's samples, sorted by series then time, with their window index."""

    sid: np.ndarray
    ts: np.ndarray
    val: np.ndarray

    def window(self, sid: int, label: int) -> slice:
        """The samples of series ``sid`` in the window labelled ``label``."""
        lo = np.searchsorted(self.sid, sid, side="left")
        hi = np.searchsorted(self.sid, sid, side="right")
        a = lo + np.searchsorted(self.ts[lo:hi], label - WINDOW, side="left")
        b = lo + np.searchsorted(self.ts[lo:hi], label, side="left")
        return slice(int(a), int(b))


def merge_into(
    new: Summaries,
    stored: dict[tuple[int, int], State],
    points: Points,
    hold: float = DEFAULT_HOLD,
) -> tuple[Summaries, list[State]]:
    """Merge a batch with the stored states of the same (series, label) keys.

    Returns the collapsed summaries to finalize (same row order as ``new``) and the state to
    store for every row.
    """
    states = []
    rows = []
    for i in range(len(new)):
        row = new.row(i)
        st = state_of(row)
        key = (int(new.sid[i]), int(new.label[i]))
        old = stored.get(key)
        if old is not None:
            w = points.window(*key)
            st = absorb(old, row, points.ts[w], points.val[w], hold)
            row = collapse(st, hold)
        states.append(st)
        rows.append(row)
    if not stored:
        return new, states
    return Summaries.from_rows(new.sid.tolist(), new.label.tolist(), rows), states
