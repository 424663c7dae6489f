"""The stored form of merge states: the write fast path and the general path agree, and a
state survives the round trip through its stored form."""

from __future__ import annotations

import numpy as np

from app.core import codec, engine, state


def _summaries() -> engine.Summaries:
    t0 = 1_700_000_010.0
    ts = np.array([t0 + 0.5, t0 + 7, t0 + 100, t0 + 101.25, t0 + 400])
    v = np.array([1.0, -2.5, 3e300, 4.0, 5.0])
    return engine.summarize(np.zeros(5, np.int64), ts, v, np.array([t0 - 40]), np.array([9.0]))


def test_fresh_encoding_equals_merge_into_states():
    """The write fast path (nothing stored) packs exactly what merge_into's states pack."""
    s = _summaries()
    _, states = state.merge_into(s, {}, state.Points(s.sid, s.first_ts, s.first_val))
    a, b = codec.encode_fresh(s), codec.encode_states(states)
    assert a.segs == b.segs and b"" in a.segs
    assert np.array_equal(np.array(a.prev_ts), np.array(b.prev_ts), equal_nan=True)
    assert np.array_equal(np.array(a.prev_val), np.array(b.prev_val), equal_nan=True)


def test_states_round_trip_through_their_stored_form():
    s = _summaries()
    _, states = state.merge_into(s, {}, state.Points(s.sid, s.first_ts, s.first_val))
    enc = codec.encode_states(states)
    for i, st in enumerate(states):
        head = [None if np.isnan(x) else x for x in (enc.prev_ts[i], enc.prev_val[i])]
        back = codec.unpack_state(head[0], head[1], enc.segs[i])
        assert back.segs == st.segs
        assert np.array_equal(
            [back.prev_ts, back.prev_val], [st.prev_ts, st.prev_val], equal_nan=True
        )
