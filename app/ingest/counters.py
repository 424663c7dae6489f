"""Counters as exact per-second rates (contract section 8).

Consecutive raw samples (t1, v1), (t2, v2) of a counter give the rate sample
(t1, (v2 - v1) / (t2 - t1)), or (t1, v2 / (t2 - t1)) on a reset (any decrease, as Prometheus
reads it, or a changed OTLP start time). Held until t2 by the aggregation, the rate's integral
over [t1, t2] is exactly the counter's increase, so every window's integral is too.

A rate is a pure function of two consecutive raw samples, so the only state is each counter's
newest raw sample, kept by the store under the host's write section and handed to
``RawCounters.apply``. Raw samples at or before it were seen already (a resend, a re-chunked
retry): they add no rate sample, so a resend can never change what was stored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from app.core.records import Batch, CounterLast, SeriesKey

RATE_SUFFIX = ".rate"


def rate_unit(unit: str | None) -> str:
    """The unit of a counter's rate: its own followed by ``/s``; joules give watts."""
    if unit in ("J", "joules", "joule"):
        return "W"
    return f"{unit or ''}/s"[:32]


def rates(
    t: np.ndarray, v: np.ndarray, start: np.ndarray, last: CounterLast | None
) -> tuple[np.ndarray, np.ndarray, CounterLast | None]:
    """Rate samples of one counter's raw samples (strictly increasing ``t``, finite), after its
    kept newest raw sample ``last``; and the newest raw sample to keep."""
    if last is not None:
        new = t > last[0]
        t = np.concatenate([[last[0]], t[new]])
        v = np.concatenate([[last[1]], v[new]])
        start = np.concatenate([[last[2]], start[new]])
    if len(t) == 0:
        return t, v, last
    keep = (float(t[-1]), float(v[-1]), float(start[-1]))
    if len(t) < 2:
        return t[:0], v[:0], keep
    s0, s1 = start[:-1], start[1:]
    restarted = (s0 != s1) & ~(np.isnan(s0) & np.isnan(s1))
    reset = (v[1:] < v[:-1]) | restarted
    increase = np.where(reset, v[1:], v[1:] - v[:-1])
    return t[:-1], increase / np.diff(t), keep


@dataclass(frozen=True)
class RawCounters:
    """One host's raw counter samples, sorted by counter then strictly increasing time.

    ``keys`` name the rate series (metric ``NAME.rate``); ``units`` are the rates' units.
    Rate samples older than ``oldest`` (the retention) are not stored.
    """

    keys: list[SeriesKey]
    units: list[str | None]
    sid: np.ndarray
    ts: np.ndarray
    val: np.ndarray
    start: np.ndarray
    oldest: float = -math.inf

    def apply(
        self, batch: Batch, last: list[CounterLast | None]
    ) -> tuple[Batch, list[CounterLast | None]]:
        """``batch`` with the counters' rate samples added; each counter's newest raw sample.

        All counters at once: each one's kept sample joins its samples newer than it, and
        consecutive samples of one counter give its rates (as ``rates``, vectorised)."""
        n = len(self.keys)
        lt, lv, ls = (np.array([np.nan if x is None else x[j] for x in last]) for j in range(3))
        new = ~(self.ts <= lt[self.sid])  # NaN (nothing kept) compares False: new
        had = np.flatnonzero(~np.isnan(lt))
        sid = np.concatenate([had, self.sid[new]])
        t = np.concatenate([lt[had], self.ts[new]])
        v = np.concatenate([lv[had], self.val[new]])
        st = np.concatenate([ls[had], self.start[new]])
        order = np.lexsort((t, sid))
        sid, t, v, st = sid[order], t[order], v[order], st[order]
        newest = np.append(sid[1:] != sid[:-1], True) if len(sid) else np.zeros(0, dtype=bool)
        kept: list[CounterLast | None] = [None] * n
        for k, j in zip(sid[newest].tolist(), np.flatnonzero(newest).tolist(), strict=True):
            kept[k] = (float(t[j]), float(v[j]), float(st[j]))
        pair = sid[1:] == sid[:-1]
        s0, s1 = st[:-1], st[1:]
        restarted = (s0 != s1) & ~(np.isnan(s0) & np.isnan(s1))
        increase = np.where((v[1:] < v[:-1]) | restarted, v[1:], v[1:] - v[:-1])
        rate = increase / np.where(pair, np.diff(t), 1.0)
        ok = pair & (t[:-1] >= self.oldest)
        if not ok.any():
            return batch, kept
        ids, inv = np.unique(sid[:-1][ok], return_inverse=True)
        keys = [self.keys[i] for i in ids.tolist()]
        units = [self.units[i] for i in ids.tolist()]
        return concat(batch, keys, units, inv.astype(np.int64), t[:-1][ok], rate[ok]), kept


def concat(
    batch: Batch,
    keys: list[SeriesKey],
    units: list[str | None],
    sid: np.ndarray,
    ts: np.ndarray,
    val: np.ndarray,
) -> Batch:
    """``batch`` with more series (``sid`` indexes ``keys``; sorted by it, then time), no
    carries."""
    n = len(batch.keys)
    nan = np.full(len(keys), np.nan)
    return Batch(
        host=batch.host,
        keys=[*batch.keys, *keys],
        units=[*batch.units, *units],
        sid=np.concatenate([batch.sid, sid + n]),
        ts=np.concatenate([batch.ts, ts]),
        val=np.concatenate([batch.val, val]),
        carry_ts=np.concatenate([batch.carry_ts, nan]),
        carry_val=np.concatenate([batch.carry_val, nan]),
        server_carry=True,
    )


def empty_batch(host: str) -> Batch:
    """A batch of no series, for a host whose request held counters only."""
    f = np.empty(0, dtype=np.float64)
    return Batch(host, [], [], np.empty(0, dtype=np.int64), f, f, f, f, server_carry=True)
