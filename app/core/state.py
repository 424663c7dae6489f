"""A window's mergeable state and its algebra: merge is commutative, associative, idempotent.

See DESIGN.md ("Aggregation semantics"): the head plus one segment per batch that touched the
window; gaps between segments are filled only when finishing, so pieces may arrive in any order.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from app.core.engine import DEFAULT_HOLD, Summaries, Summary


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


def merge_into(
    new: Summaries, stored: dict[tuple[int, int], State], hold: float = DEFAULT_HOLD
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
        old = stored.get((int(new.sid[i]), int(new.label[i])))
        if old is not None:
            st = merge(old, st)
            row = collapse(st, hold)
        states.append(st)
        rows.append(row)
    if not stored:
        return new, states
    return Summaries.from_rows(new.sid.tolist(), new.label.tolist(), rows), states
