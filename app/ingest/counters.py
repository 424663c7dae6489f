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
        """``batch`` with the counters' rate samples added; each counter's newest raw sample."""
        bounds = np.searchsorted(self.sid, np.arange(len(self.keys) + 1))
        keys, units, parts_t, parts_v, kept = [], [], [], [], []
        for k in range(len(self.keys)):
            a, b = bounds[k], bounds[k + 1]
            rt, rv, newest = rates(self.ts[a:b], self.val[a:b], self.start[a:b], last[k])
            kept.append(newest)
            ok = rt >= self.oldest
            if ok.any():
                keys.append(self.keys[k])
                units.append(self.units[k])
                parts_t.append(rt[ok])
                parts_v.append(rv[ok])
        if not keys:
            return batch, kept
        return concat(batch, keys, units, parts_t, parts_v), kept


def concat(
    batch: Batch,
    keys: list[SeriesKey],
    units: list[str | None],
    ts: list[np.ndarray],
    val: list[np.ndarray],
) -> Batch:
    """``batch`` with more series (each with at least one point, sorted), no carries."""
    n = len(batch.keys)
    counts = [len(x) for x in ts]
    sid = np.repeat(np.arange(n, n + len(keys), dtype=np.int64), counts)
    nan = np.full(len(keys), np.nan)
    return Batch(
        host=batch.host,
        keys=[*batch.keys, *keys],
        units=[*batch.units, *units],
        sid=np.concatenate([batch.sid, sid]),
        ts=np.concatenate([batch.ts, *ts]),
        val=np.concatenate([batch.val, *val]),
        carry_ts=np.concatenate([batch.carry_ts, nan]),
        carry_val=np.concatenate([batch.carry_val, nan]),
        server_carry=True,
    )


def empty_batch(host: str) -> Batch:
    """A batch of no series, for a host whose request held counters only."""
    f = np.empty(0, dtype=np.float64)
    return Batch(host, [], [], np.empty(0, dtype=np.int64), f, f, f, f, server_carry=True)
