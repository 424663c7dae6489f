"""Out-of-order batches: a batch's last sample holds into the stored windows after it.

A batch's newest sample holds to the end of its own window at most, since nothing in the batch
shows it lasted longer. When the store already holds later samples of the series (a batch that
arrives after a later one, as re-batching senders and several API nodes produce), it does show
that: the sample holds on, up to the hold limit, until the next stored sample. ``tails`` proposes
head-only rows for the windows it may reach; ``trim`` keeps those the stored states confirm.
"""

from __future__ import annotations

import numpy as np

from app.core.engine import WINDOW, Summaries, concat_sorted, gap_windows
from app.core.state import State


def tails(
    last_ts: np.ndarray, last_val: np.ndarray, latest_ts: np.ndarray, hold: float
) -> Summaries:
    """Head-only rows after each series' last sample, for series whose newest stored sample
    is newer than the batch's (per series index; NaN latest: nothing stored)."""
    late = np.flatnonzero(np.nan_to_num(latest_ts, nan=-np.inf) > last_ts)
    never = np.full(len(late), np.iinfo(np.int64).max // 2, dtype=np.int64)
    return gap_windows(late.astype(np.int64), last_ts[late], last_val[late], never, hold)


def with_tails(s: Summaries, t: Summaries) -> tuple[Summaries, np.ndarray]:
    """The batch's rows and the tail rows, sorted by (series, label); which rows are tails."""
    both = concat_sorted(s, t)
    flag = np.concatenate([np.zeros(len(s), dtype=bool), np.ones(len(t), dtype=bool)])
    return both, flag[np.lexsort((np.append(s.label, t.label), np.append(s.sid, t.sid)))]


def trim(
    rows: Summaries, is_tail: np.ndarray, last_ts: np.ndarray, stored: dict[tuple[int, int], State]
) -> np.ndarray:
    """Indices of ``rows`` to keep: every batch row, and the tail rows up to and including
    the first window with a stored sample, unless a stored sample in the batch's own last
    window is already newer than the batch's last sample (it holds on instead)."""
    keep = ~is_tail
    for k in np.unique(rows.sid[is_tail]).tolist():
        own = stored.get((k, int(np.floor(last_ts[k] / WINDOW) + 1) * WINDOW))
        if own is not None and any(s.last_ts > last_ts[k] for s in own.segs):
            continue
        for i in np.flatnonzero(is_tail & (rows.sid == k)).tolist():
            keep[i] = True
            st = stored.get((k, int(rows.label[i])))
            if st is not None and st.segs:
                break
    return np.flatnonzero(keep)
