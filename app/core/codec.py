"""The stored form of a window's merge state, shared by every store.

A state is its head (``prev_ts``, ``prev_val``: NaN when absent, stored as NULL / omitted) and
its segments packed as little-endian float64 rows of ``SEG_WIDTH`` values (``n``, first_ts,
first_val, last_ts, last_val, inner_int, inner_cov, vmin, vmax): compact, exact, no parsing.
SQLite keeps the bytes as a BLOB, InfluxDB as base64 text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from app.core import state as st
from app.core.engine import SUMMARY_FIELDS, Summaries, Summary
from app.core.state import State

SEG_WIDTH = 9  # Summary fields without the head
SEG_BYTES = SEG_WIDTH * 8


@dataclass(frozen=True)
class EncodedStates:
    """Per window row: the head (NaN = none) and the packed segments (b"" = none)."""

    prev_ts: list[float]
    prev_val: list[float]
    segs: list[bytes]


def pack_segs(segs: tuple[Summary, ...]) -> bytes:
    """Segments as little-endian float64 rows."""
    return np.array([s[:SEG_WIDTH] for s in segs], dtype="<f8").tobytes()


def unpack_state(prev_ts: float | None, prev_val: float | None, blob: bytes) -> State:
    """A stored state back (NULL heads and an empty blob allowed)."""
    arr = np.frombuffer(blob, dtype="<f8").reshape(-1, SEG_WIDTH)
    segs = tuple(Summary(int(r[0]), *map(float, r[1:]), 0.0, 0.0) for r in arr)
    nan = math.nan
    return State(nan if prev_ts is None else prev_ts, nan if prev_val is None else prev_val, segs)


def encode_states(states: list[State]) -> EncodedStates:
    """The stored form of merged states."""
    return EncodedStates(
        [st.prev_ts for st in states],
        [st.prev_val for st in states],
        [pack_segs(st.segs) if st.segs else b"" for st in states],
    )


def encode_fresh(s: Summaries) -> EncodedStates:
    """What ``encode_states`` gives for windows with nothing stored, vectorised: each row's
    state is its own summary (one segment when it has samples, none for count-0 rows)."""
    rows = np.column_stack(
        [s.n.astype(np.float64)] + [getattr(s, f) for f in SUMMARY_FIELDS[1:SEG_WIDTH]]
    ).astype("<f8")
    blob = rows.tobytes()
    has = (s.n > 0).tolist()
    segs = [blob[i * SEG_BYTES : (i + 1) * SEG_BYTES] if h else b"" for i, h in enumerate(has)]
    return EncodedStates(s.prev_ts.tolist(), s.prev_val.tolist(), segs)


def merge_encoded(
    s: Summaries, stored: dict[tuple[int, int], State], points: st.Points, hold: float
) -> tuple[Summaries, EncodedStates]:
    """A batch's rows merged with what is stored, and the states to store, in row order.

    Only rows with a stored state go through ``state.merge_into``'s per-row merge; the others
    (all of them in the usual case) are their own state, encoded vectorised."""
    if not stored:
        return s, encode_fresh(s)
    keys = zip(s.sid.tolist(), s.label.tolist(), strict=True)
    has = np.fromiter((k in stored for k in keys), dtype=bool, count=len(s))
    old, new = np.flatnonzero(has), np.flatnonzero(~has)
    part, states = st.merge_into(s.take(old), stored, points, hold)
    merged, fresh = encode_states(states), encode_fresh(s.take(new))
    order = np.argsort(np.concatenate([old, new]), kind="stable")
    rows = Summaries(
        **{k: np.concatenate([getattr(part, k), v[new]])[order] for k, v in s.__dict__.items()}
    )
    idx = order.tolist()
    cols = []
    for a, b in _columns(merged, fresh):
        ab = a + b
        cols.append([ab[i] for i in idx])
    return rows, EncodedStates(*cols)


def _columns(a: EncodedStates, b: EncodedStates) -> list[tuple[list, list]]:
    """The two encodings' columns side by side, in field order."""
    return [(a.prev_ts, b.prev_ts), (a.prev_val, b.prev_val), (a.segs, b.segs)]
