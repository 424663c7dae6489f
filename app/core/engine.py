"""The 30-second aggregation: samples in, mergeable window summaries and finished windows out.

Pure numpy: no Flask, no storage. The contract (section 4) is implemented in two steps so that
the stored result is a function of the samples alone, whatever the batching:

1. ``summarize`` turns a batch into one *summary* per (series, window). A summary keeps only
   what is needed to merge two partial windows exactly: the count, the first and last sample
   inside the window, the integral and covered time between them, min/max of the in-window
   values, and the *head*: the newest sample known before the window (from the batch itself or
   its ``carry``), whose held value covers the window's start.
2. ``finalize`` turns summaries into the stored fields (mean, min, max, last, count, covered,
   integral). ``merge`` combines a stored summary with a new one for the same window (a retry,
   or the window's samples split over batches, in any order).

Why it works: inside a window, the hold of the last sample always ends at
``min(window end, t + H)``, because the next sample lies in a later window by definition; only
the part *before* the first in-window sample depends on other batches, and that is the head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from app.core.records import Windows

WINDOW = 30
WINDOW_30M = 1800
DEFAULT_HOLD = 90.0

SUMMARY_FIELDS = (
    "n",
    "first_ts",
    "first_val",
    "last_ts",
    "last_val",
    "inner_int",
    "inner_cov",
    "vmin",
    "vmax",
    "prev_ts",
    "prev_val",
)
FINAL_FIELDS = ("mean", "min", "max", "last", "count", "covered", "integral")


class Summary(NamedTuple):
    """One window's mergeable state; NaN marks an absent value (no sample, no head)."""

    n: int
    first_ts: float
    first_val: float
    last_ts: float
    last_val: float
    inner_int: float
    inner_cov: float
    vmin: float
    vmax: float
    prev_ts: float
    prev_val: float


@dataclass(frozen=True)
class Summaries:
    """Columnar summaries, one row per (series index, window label), sorted by both."""

    sid: np.ndarray  # int64 series index within the batch
    label: np.ndarray  # int64 window right edge, epoch seconds
    n: np.ndarray  # int64
    first_ts: np.ndarray
    first_val: np.ndarray
    last_ts: np.ndarray
    last_val: np.ndarray
    inner_int: np.ndarray
    inner_cov: np.ndarray
    vmin: np.ndarray
    vmax: np.ndarray
    prev_ts: np.ndarray
    prev_val: np.ndarray

    def __len__(self) -> int:
        return len(self.label)

    def row(self, i: int) -> Summary:
        """One row as a scalar Summary, for the rare merge with stored state."""
        return Summary(
            int(self.n[i]),
            *(float(getattr(self, f)[i]) for f in SUMMARY_FIELDS[1:]),
        )

    def take(self, idx: np.ndarray) -> Summaries:
        """The rows a write keeps (``tails.trim``)."""
        return Summaries(**{k: v[idx] for k, v in self.__dict__.items()})

    @classmethod
    def from_rows(cls, sid: list[int], label: list[int], rows: list[Summary]) -> Summaries:
        """Build columns from scalar rows (merged or read back from a store)."""
        cols = list(zip(*rows, strict=True)) if rows else [()] * len(SUMMARY_FIELDS)
        return cls(
            np.asarray(sid, dtype=np.int64),
            np.asarray(label, dtype=np.int64),
            np.asarray(cols[0], dtype=np.int64),
            *(np.asarray(c, dtype=np.float64) for c in cols[1:]),
        )


def summarize(
    sid: np.ndarray,
    ts: np.ndarray,
    val: np.ndarray,
    carry_ts: np.ndarray,
    carry_val: np.ndarray,
    hold: float = DEFAULT_HOLD,
) -> Summaries:
    """Summarise a whole batch (every series at once) into per-window summaries.

    ``sid``/``ts``/``val`` are the concatenated points, sorted by series index then strictly
    increasing time. ``carry_ts``/``carry_val`` are indexed by series index (NaN: no carry);
    a carry must lie strictly before its series' first point.
    """
    sid = np.asarray(sid, dtype=np.int64)
    ts = np.asarray(ts, dtype=np.float64)
    val = np.asarray(val, dtype=np.float64)
    if len(ts) == 0:
        return _empty()
    p = _Points(sid, ts, val, np.floor(ts / WINDOW).astype(np.int64), carry_ts, carry_val)
    groups = _groups(p, hold)
    gaps = _gap_sources(p, hold)
    return groups if len(gaps) == 0 else concat_sorted(groups, gaps)[0]


class _Points(NamedTuple):
    """A batch's points with their window index, and the per-series carries."""

    sid: np.ndarray
    ts: np.ndarray
    val: np.ndarray
    win: np.ndarray
    carry_ts: np.ndarray
    carry_val: np.ndarray


def _groups(p: _Points, hold: float) -> Summaries:
    """One summary per run of points sharing (series, window)."""
    sid, ts, val, win = p.sid, p.ts, p.val, p.win
    n_pts = len(ts)
    same_series_next = sid[1:] == sid[:-1]
    brk = np.empty(n_pts, dtype=bool)
    brk[0] = True
    brk[1:] = ~same_series_next | (win[1:] != win[:-1])
    g_start = np.flatnonzero(brk)
    g_end = np.append(g_start[1:], n_pts) - 1
    # Pairs (i, i+1) of one series inside one window add their held interval to the group.
    dt = np.zeros(n_pts)
    in_pair = same_series_next & (win[1:] == win[:-1])
    dt[:-1] = np.where(in_pair, np.minimum(np.diff(ts), hold), 0.0)
    prev_ts, prev_val = _heads(p, g_start)
    return Summaries(
        sid=sid[g_start],
        label=(win[g_start] + 1) * WINDOW,
        n=(g_end - g_start + 1).astype(np.int64),
        first_ts=ts[g_start],
        first_val=val[g_start],
        last_ts=ts[g_end],
        last_val=val[g_end],
        inner_int=np.add.reduceat(dt * val, g_start),
        inner_cov=np.add.reduceat(dt, g_start),
        vmin=np.minimum.reduceat(val, g_start),
        vmax=np.maximum.reduceat(val, g_start),
        prev_ts=prev_ts,
        prev_val=prev_val,
    )


def _heads(p: _Points, g_start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each group's head: the previous point of the same series, else the series' carry when
    it lies in an earlier window (a carry in the same window changes nothing there)."""
    sid, ts, val, win, carry_ts, carry_val = p
    g_sid = sid[g_start]
    prev_idx = np.maximum(g_start - 1, 0)
    has_prev_pt = (g_start >= 1) & (sid[prev_idx] == g_sid)
    c_ts, c_val = carry_ts[g_sid], carry_val[g_sid]
    carry_ok = ~np.isnan(c_ts) & (np.floor(np.nan_to_num(c_ts) / WINDOW) < win[g_start])
    prev_ts = np.where(has_prev_pt, ts[prev_idx], np.where(carry_ok, c_ts, np.nan))
    prev_val = np.where(has_prev_pt, val[prev_idx], np.where(carry_ok, c_val, np.nan))
    return prev_ts, prev_val


def _gap_sources(p: _Points, hold: float) -> Summaries:
    """Windows with no point of their own but covered by a held value: between consecutive
    points of a series, and between a carry and its series' first point."""
    sid, ts, val, win, carry_ts, carry_val = p
    same_series_next = sid[1:] == sid[:-1]
    first_of_series = np.flatnonzero(np.append(True, ~same_series_next))
    src_ts = np.concatenate([ts[:-1][same_series_next], carry_ts[sid[first_of_series]]])
    src_val = np.concatenate([val[:-1][same_series_next], carry_val[sid[first_of_series]]])
    src_sid = np.concatenate([sid[:-1][same_series_next], sid[first_of_series]])
    nxt_win = np.concatenate([win[1:][same_series_next], win[first_of_series]])
    keep = ~np.isnan(src_ts)
    return gap_windows(src_sid[keep], src_ts[keep], src_val[keep], nxt_win[keep], hold)


def gap_windows(
    sid: np.ndarray, ts: np.ndarray, val: np.ndarray, nxt_win: np.ndarray, hold: float
) -> Summaries:
    """Count-0 windows strictly between a source sample's window and the next point's."""
    src_win = np.floor(ts / WINDOW).astype(np.int64)
    # A window [w*30, w*30+30) is covered when its start lies before the hold's end.
    last_cov = np.ceil((ts + hold) / WINDOW).astype(np.int64) - 1
    last = np.minimum(nxt_win - 1, last_cov)
    k = np.maximum(last - src_win, 0)
    total = int(k.sum())
    if total == 0:
        return _empty()
    rep = np.repeat(np.arange(len(ts)), k)
    offs = np.arange(total) - np.repeat(np.cumsum(k) - k, k)
    w = src_win[rep] + 1 + offs
    nan = np.full(total, np.nan)
    return Summaries(
        sid=sid[rep],
        label=(w + 1) * WINDOW,
        n=np.zeros(total, dtype=np.int64),
        first_ts=nan,
        first_val=nan,
        last_ts=nan,
        last_val=nan,
        inner_int=np.zeros(total),
        inner_cov=np.zeros(total),
        vmin=nan,
        vmax=nan,
        prev_ts=ts[rep],
        prev_val=val[rep],
    )


def _empty() -> Summaries:
    return Summaries.from_rows([], [], [])


def concat_sorted(a: Summaries, b: Summaries) -> tuple[Summaries, np.ndarray]:
    """Rows of both in the (series, label) order every consumer expects; which came from ``b``."""
    cols = {
        f: np.concatenate([getattr(a, f), getattr(b, f)]) for f in ("sid", "label", *SUMMARY_FIELDS)
    }
    order = np.lexsort((cols["label"], cols["sid"]))
    from_b = np.concatenate([np.zeros(len(a), dtype=bool), np.ones(len(b), dtype=bool)])
    return Summaries(**{f: c[order] for f, c in cols.items()}), from_b[order]


def finalize(s: Summaries, hold: float = DEFAULT_HOLD) -> Windows:
    """Turn summaries into the stored fields; rows with covered == 0 must not be stored."""
    start = s.label.astype(np.float64) - WINDOW
    end = s.label.astype(np.float64)
    has_n = s.n > 0
    has_prev = ~np.isnan(s.prev_ts)
    head_end = np.where(has_n, s.first_ts, end)
    head = np.where(
        has_prev, np.clip(np.minimum(head_end, np.nan_to_num(s.prev_ts) + hold) - start, 0, None), 0
    )
    tail = np.where(has_n, np.minimum(end, np.nan_to_num(s.last_ts) + hold) - s.last_ts, 0.0)
    tail = np.nan_to_num(tail)
    integral = (
        np.where(head > 0, np.nan_to_num(s.prev_val) * head, 0.0)
        + s.inner_int
        + np.where(has_n, np.nan_to_num(s.last_val) * tail, 0.0)
    )
    covered = head + s.inner_cov + tail
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(covered > 0, integral / covered, np.nan)
    head_val = np.where(head > 0, s.prev_val, np.nan)
    return Windows(
        time=s.label.copy(),
        mean=mean,
        min=np.fmin(s.vmin, head_val),
        max=np.fmax(s.vmax, head_val),
        last=np.where(has_n, s.last_val, s.prev_val),
        count=s.n.copy(),
        covered=covered,
        integral=integral,
    )


def downsample(
    label: np.ndarray,
    wmin: np.ndarray,
    wmax: np.ndarray,
    last: np.ndarray,
    count: np.ndarray,
    covered: np.ndarray,
    integral: np.ndarray,
    period: int = WINDOW_30M,
) -> dict[str, np.ndarray]:
    """Roll one series' 30-second points (sorted by label) into right-labelled longer windows.

    A 30-second point labelled L belongs to the period window labelled P when P - period < L <= P,
    so the mean stays time-weighted: sum(integral) / sum(covered).
    """
    if len(label) == 0:
        return {k: np.array([]) for k in ("label", *FINAL_FIELDS)}
    plabel = (np.ceil(label / period) * period).astype(np.int64)
    starts = np.flatnonzero(np.append(True, plabel[1:] != plabel[:-1]))
    ends = np.append(starts[1:], len(label)) - 1
    integ = np.add.reduceat(integral, starts)
    cov = np.add.reduceat(covered, starts)
    return {
        "label": plabel[starts],
        "mean": integ / cov,
        "min": np.minimum.reduceat(wmin, starts),
        "max": np.maximum.reduceat(wmax, starts),
        "last": last[ends],
        "count": np.add.reduceat(count, starts),
        "covered": cov,
        "integral": integ,
    }
