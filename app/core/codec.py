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
