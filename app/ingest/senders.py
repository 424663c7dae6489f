"""What every section 8 sender shares (remote write, OTLP): names normalised, samples checked
against the limits, sorted and de-duplicated, grouped per host into a ``Batch`` (gauges and
ready rates) and ``RawCounters``. Unlike section 3 a request is not all-or-nothing: a refused
series or sample is noted in ``refused`` and the rest is stored."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from app.core.errors import TooLarge
from app.core.names import (
    MAX_TAGS,
    host_error,
    metric_error,
    tag_key_error,
    tag_value_error,
)
from app.core.records import Batch, SeriesKey
from app.ingest import Limits
from app.ingest.counters import RATE_SUFFIX, RawCounters, concat, empty_batch, rate_unit

MAX_ABS_VALUE = 1e300  # as json_samples: the integrals must not overflow
MAX_REFUSED = 50  # series named in an answer
_NOT_METRIC = re.compile(r"[^a-z0-9._]")
_NOT_TAG = re.compile(r"[^a-z0-9_]")

GAUGE, COUNTER, RATE = "gauge", "counter", "rate"  # RATE: rate samples computed by the sender


def metric_name(name: str) -> str:
    """A metric name by the section 8 rule: lowercased, other characters ``_``."""
    return _NOT_METRIC.sub("_", name.lower())


def tag_key(name: str) -> str:
    """A tag key by the section 8 rule: lowercased, other characters ``_``."""
    return _NOT_TAG.sub("_", name.lower())


@functools.lru_cache(maxsize=65536)
def normalise(
    metric: str, labels: tuple[tuple[str, str], ...], kind: str
) -> tuple[SeriesKey | None, str | None]:
    """The series key of a sender's name and labels, or why the series is refused (cached per
    worker: senders repeat the same series in every request)."""
    m = metric_name(metric) + (RATE_SUFFIX if kind != GAUGE else "")
    if err := metric_error(m):
        return None, f"metric {m!r} {err}"
    tags: dict[str, str] = {}
    origin: dict[str, str] = {}
    for k, v in labels:
        key = tag_key(k)
        if err := tag_key_error(key) or tag_value_error(v):
            return None, f"label {k!r}: {err}"
        if key in tags:
            return None, f"labels {origin[key]!r} and {k!r} both become tag {key!r}"
        tags[key], origin[key] = v, k
    if len(tags) > MAX_TAGS:
        return None, f"{len(tags)} tags; at most {MAX_TAGS}"
    return (m, tuple(sorted(tags.items()))), None


@dataclass(frozen=True)
class Part:
    """One host's share of a request: what ``Store.write(batch, counters)`` takes."""

    batch: Batch
    counters: RawCounters | None


@dataclass
class _Columns:
    """Samples as added, flat: series index per run, then the values."""

    sid: list[int] = field(default_factory=list)
    count: list[int] = field(default_factory=list)
    ts: list[float] = field(default_factory=list)
    val: list[float] = field(default_factory=list)
    start: list[float] = field(default_factory=list)


class Sink:
    """Collects one request's series; checked, sorted and grouped per host in ``parts``."""

    def __init__(self, limits: Limits, now: float) -> None:
        self.limits = limits
        self.oldest = now - limits.retention_30s
        self.newest = now + limits.future_slack
        self.index: dict[tuple[str, str, SeriesKey], int] = {}
        self.series: list[tuple[str, str, SeriesKey, str | None, str]] = []  # + unit, name
        self.cols = _Columns()
        self.refused: dict[str, str] = {}  # series as the sender named it -> why
        self.rejected = 0  # samples not stored (NaN and stale markers are not counted)
        self._hosts: dict[str, str | None] = {}

    def refuse(self, name: str, reason: str, samples: int) -> None:
        """Note a refused series (or some of its samples)."""
        self.rejected += samples
        if len(self.refused) < MAX_REFUSED:
            self.refused[name] = reason

    def add(
        self,
        name: str,
        host: str,
        key: SeriesKey,
        unit: str | None,
        kind: str,
        ts: Sequence[float],
        val: Sequence[float],
        start: Sequence[float] | None = None,
    ) -> None:
        """Samples of one series (seconds, any order); checked in ``parts``."""
        err = self._hosts.get(host, "?")
        if err == "?":
            err = self._hosts[host] = host_error(host)
        if err:
            self.refuse(name, f"host {host!r} {err}", len(ts))
            return
        i = self.index.setdefault((host, kind, key), len(self.series))
        if i == len(self.series):
            self.series.append((host, kind, key, unit, name))
        elif unit is not None:
            self.series[i] = (host, kind, key, unit, name)
        c = self.cols
        c.sid.append(i)
        c.count.append(len(ts))
        c.ts.extend(ts)
        c.val.extend(val)
        c.start.extend(start if start is not None else [math.nan] * len(ts))
        if len(c.ts) > self.limits.max_points:
            raise TooLarge(f"more than {self.limits.max_points} samples in one request")

    def hosts(self) -> set[str]:
        """Every host a stored sample would name."""
        return {s[0] for s in self.series}

    def parts(self) -> list[Part]:
        """Per host: its gauges and ready rates as a ``Batch``, its counters as ``RawCounters``."""
        c = self.cols
        sid = np.repeat(np.array(c.sid, dtype=np.int64), np.array(c.count, dtype=np.int64))
        ts, val = np.array(c.ts, dtype=np.float64), np.array(c.val, dtype=np.float64)
        start = np.array(c.start, dtype=np.float64)
        keep = self._checked(sid, ts, val)
        if not keep.any():
            return []
        sid, ts, val, start = sid[keep], ts[keep], val[keep], start[keep]
        group = self._groups()
        order = np.lexsort((ts, sid, group[sid]))  # stable: the last sent of one time wins
        sid, ts, val, start = sid[order], ts[order], val[order], start[order]
        last = np.append((sid[1:] != sid[:-1]) | (ts[1:] != ts[:-1]), True)
        sid, ts, val, start = sid[last], ts[last], val[last], start[last]
        g = group[sid]
        bounds = np.flatnonzero(np.diff(g)) + 1
        out: dict[str, list] = {}
        for part in np.split(np.arange(len(sid)), bounds):
            host, kind = self.series[int(sid[part[0]])][:2]
            cols = (sid[part], ts[part], val[part], start[part])
            out.setdefault(host, [None, None])[kind == COUNTER] = cols
        return [self._part(h, *out[h]) for h in sorted(out)]

    def _checked(self, sid: np.ndarray, ts: np.ndarray, val: np.ndarray) -> np.ndarray:
        """Samples to store; NaN (stale markers too) is no sample, the rest out of the limits
        is refused and reported per series."""
        ok = ~np.isnan(val)
        bad = ok & ((np.abs(val) > MAX_ABS_VALUE) | (ts < self.oldest) | (ts > self.newest))
        if bad.any():
            for i in np.unique(sid[bad]).tolist():
                mine = bad & (sid == i)
                t0, v0 = float(ts[mine][0]), float(val[mine][0])
                why = "value not finite" if not math.isfinite(v0) else "outside the limits"
                self.refuse(
                    self.series[i][4],
                    f"{int(mine.sum())} sample(s) refused ({why}: timestamps from "
                    f"{self.oldest:.0f} to {self.newest:.0f}, |value| <= {MAX_ABS_VALUE:g}; "
                    f"first at {t0:.3f})",
                    int(mine.sum()),
                )
        return ok & ~bad

    def _groups(self) -> np.ndarray:
        """Per series: its (host, gauge or counter) group's rank, hosts in name order."""
        names = sorted({(h, k == COUNTER) for h, k, *_ in self.series})
        rank = {n: r for r, n in enumerate(names)}
        return np.array([rank[(h, k == COUNTER)] for h, k, *_ in self.series], dtype=np.int64)

    def _part(self, host: str, gauges: tuple | None, counters: tuple | None) -> Part:
        batch = empty_batch(host)
        gauge_keys = set()
        if gauges is not None:
            ids, inv = np.unique(gauges[0], return_inverse=True)
            keys = [self.series[i][2] for i in ids.tolist()]
            gauge_keys = set(keys)
            units = [self.series[i][3] for i in ids.tolist()]
            batch = concat(batch, keys, units, inv.astype(np.int64), gauges[1], gauges[2])
        if counters is None:
            return Part(batch, None)
        ids, inv = np.unique(counters[0], return_inverse=True)
        clash = np.array([self.series[i][2] in gauge_keys for i in ids.tolist()], dtype=bool)
        for i in ids[clash].tolist():
            n = int((counters[0] == i).sum())
            self.refuse(self.series[i][4], "a counter and a gauge or delta sum of one name", n)
        keep = ~clash[inv]
        ids, inv = np.unique(counters[0][keep], return_inverse=True)
        if not len(ids):
            return Part(batch, None)
        raw = RawCounters(
            keys=[self.series[i][2] for i in ids.tolist()],
            units=[rate_unit(self.series[i][3]) for i in ids.tolist()],
            sid=inv.astype(np.int64),
            ts=counters[1][keep],
            val=counters[2][keep],
            start=counters[3][keep],
            oldest=self.oldest,
        )
        return Part(batch, raw)
