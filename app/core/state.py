"""A window's stored state (a head and disjoint segments) and how a batch's samples join it.

See DESIGN.md ("Aggregation semantics"): gaps between segments are filled only when finishing,
so pieces may arrive in any order, and re-cut resends are absorbed sample by sample.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from app.core.engine import DEFAULT_HOLD, WINDOW, Summaries, Summary


class State(NamedTuple):
    """A window's stored state: the newest sample before it (the head) and disjoint segments.

    A segment summarises one run of a sender's samples inside the window (``prev_*`` zeroed);
    a batch adds one segment per run not already covered by a stored segment's span.
    """

    prev_ts: float
    prev_val: float
    segs: tuple[Summary, ...]


def state_of(row: Summary) -> State:
    """The state a single batch leaves in a window with nothing stored."""
    seg = (row._replace(prev_ts=0.0, prev_val=0.0),) if row.n > 0 else ()
    return State(row.prev_ts, row.prev_val, seg)


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


def absorb(
    old: State, head: tuple[float, float], ts: np.ndarray, val: np.ndarray, hold: float
) -> State:
    """Exact for resends re-cut to overlap: a stored segment counts every sample in its span."""
    # A sender's batch is a contiguous run of its samples, so new samples inside a stored
    # segment's [first_ts, last_ts] are already counted there; the others form new segments,
    # cut wherever a stored segment lies between them. The newer head wins.
    heads = [h for h in ((old.prev_ts, old.prev_val), head) if not math.isnan(h[0])]
    prev_ts, prev_val = max(heads) if heads else (math.nan, math.nan)
    firsts = np.sort([s.first_ts for s in old.segs])
    lasts = np.sort([s.last_ts for s in old.segs])
    started = np.searchsorted(firsts, ts, side="right")  # stored segments starting at or before
    ended = np.searchsorted(lasts, ts, side="left")  # stored segments ending before
    idx = np.flatnonzero(started == ended)  # samples no stored span contains
    segs = list(old.segs)
    if len(idx):
        cut = np.flatnonzero(np.diff(started[idx]) != 0) + 1  # a stored segment in between
        segs.extend(segment(ts[run], val[run], hold) for run in np.split(idx, cut))
    return State(prev_ts, prev_val, tuple(sorted(segs, key=lambda s: s.first_ts)))


def segment(ts: np.ndarray, val: np.ndarray, hold: float) -> Summary:
    """A run's summary from its samples (strictly increasing ``ts``, one window), as
    ``engine.summarize`` makes it, for the rare window that absorbs a re-cut resend."""
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
    """A batch's samples (sorted by series, then time), for the windows that absorb them."""

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
        key = (int(new.sid[i]), int(new.label[i]))
        old = stored.get(key)
        if old is None:
            st = state_of(row)
        else:
            w = points.window(*key)
            st = absorb(old, (row.prev_ts, row.prev_val), points.ts[w], points.val[w], hold)
            row = collapse(st, hold)
        states.append(st)
        rows.append(row)
    if not stored:
        return new, states
    return Summaries.from_rows(new.sid.tolist(), new.label.tolist(), rows), states
