"""Out-of-order batches: a batch's last sample holds into the stored windows after it.

A batch's newest sample holds to the end of its own window at most, since nothing in the batch
shows it lasted longer. When the store already holds later samples of the series (a batch that
arrives after a later one, as re-batching senders and several API nodes produce), it does show
that: the sample holds on, up to the hold limit, until the next stored sample. ``tails`` proposes
head-only rows for the windows it may reach (``engine.concat_sorted`` puts them among the
batch's rows); ``trim`` keeps those the stored states confirm.
"""

from __future__ import annotations

import itertools

import numpy as np

from app.core.engine import WINDOW, Summaries, gap_windows
from app.core.state import State


def tails(
    last_ts: np.ndarray, last_val: np.ndarray, latest_ts: np.ndarray, hold: float
) -> Summaries:
    """Head-only rows after each series' last sample, where a newer sample is stored already."""
    # Per series index; NaN latest: nothing stored. The rows stop at the newest stored
    # sample's window, which the InfluxDB store's high-water mark already covers.
    late = np.flatnonzero(np.nan_to_num(latest_ts, nan=-np.inf) > last_ts)
    upto = np.floor(latest_ts[late] / WINDOW).astype(np.int64) + 1
    return gap_windows(late.astype(np.int64), last_ts[late], last_val[late], upto, hold)


def trim(
    rows: Summaries, is_tail: np.ndarray, last_ts: np.ndarray, stored: dict[tuple[int, int], State]
) -> np.ndarray:
    """Indices of the rows to write: tails only as far as the stored samples confirm them."""
    # Every batch row; each series' tail rows up to and including the first window holding a
    # stored sample (its head is then the newer of the two), and none when a stored sample in
    # the batch's own last window is already newer than the batch's last sample.
    keep = ~is_tail
    tail_rows = np.flatnonzero(is_tail)
    for k, idx in _by_series(rows.sid[tail_rows], tail_rows):
        own = stored.get((k, int(np.floor(last_ts[k] / WINDOW) + 1) * WINDOW))
        if own is not None and any(s.last_ts > last_ts[k] for s in own.segs):
            continue
        for i in idx:
            keep[i] = True
            st = stored.get((k, int(rows.label[i])))
            if st is not None and st.segs:
                break
    return np.flatnonzero(keep)


def _by_series(sid: np.ndarray, idx: np.ndarray) -> list[tuple[int, list[int]]]:
    """``idx`` grouped by series (``sid`` sorted, as rows are)."""
    starts = np.flatnonzero(np.append(True, sid[1:] != sid[:-1])) if len(sid) else []
    bounds = [*starts, len(sid)]
    return [(int(sid[a]), idx[a:b].tolist()) for a, b in itertools.pairwise(bounds)]
