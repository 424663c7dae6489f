"""What every section 8 sender shares (remote write, OTLP): names normalised, samples checked
against the limits, sorted and de-duplicated, grouped per host into a ``Batch`` (gauges and
ready rates) and ``RawCounters``. Unlike section 3 a request is not all-or-nothing: a refused
series or sample is noted in ``refused`` and the rest is stored."""

from __future__ import annotations

import re
from collections.abc import Iterable
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


def normalise(
    metric: str, labels: Iterable[tuple[str, str]], kind: str
) -> tuple[SeriesKey | None, str | None]:
    """The series key of a sender's name and labels, or why the series is refused."""
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


@dataclass
class _Series:
    unit: str | None
    ts: list[np.ndarray] = field(default_factory=list)
    val: list[np.ndarray] = field(default_factory=list)
    start: list[np.ndarray] = field(default_factory=list)


@dataclass(frozen=True)
class Part:
    """One host's share of a request: what ``Store.write(batch, counters)`` takes."""

    batch: Batch
    counters: RawCounters | None


class Sink:
    """Collects one request's series, checked, per host and kind."""

    def __init__(self, limits: Limits, now: float) -> None:
        self.limits = limits
        self.oldest = now - limits.retention_30s
        self.newest = now + limits.future_slack
        self.series: dict[tuple[str, str, SeriesKey], _Series] = {}
        self.refused: dict[str, str] = {}  # series as the sender named it -> why
        self.rejected = 0  # samples not stored (NaN and stale markers are not counted)
        self.points = 0

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
        ts: np.ndarray,
        val: np.ndarray,
        start: np.ndarray | None = None,
    ) -> None:
        """Samples of one series (seconds, any order); NaN is no sample, the rest is checked."""
        if err := host_error(host):
            self.refuse(name, f"host {host!r} {err}", len(ts))
            return
        ok = ~np.isnan(val)  # Prometheus' stale markers and any other NaN: nothing stored
        bad = ok & ((np.abs(val) > MAX_ABS_VALUE) | (ts < self.oldest) | (ts > self.newest))
        if bad.any():
            t0 = float(ts[bad][0])
            why = "value not finite" if not np.isfinite(val[bad][0]) else "outside the limits"
            self.refuse(
                name,
                f"{int(bad.sum())} sample(s) refused ({why}: timestamps from "
                f"{self.oldest:.0f} to {self.newest:.0f}, |value| <= {MAX_ABS_VALUE:g}; "
                f"first at {t0:.3f})",
                int(bad.sum()),
            )
            ok &= ~bad
        if not ok.any():
            return
        self.points += int(ok.sum())
        if self.points > self.limits.max_points:
            raise TooLarge(f"more than {self.limits.max_points} samples in one request")
        s = self.series.setdefault((host, kind, key), _Series(unit))
        s.unit = unit if unit is not None else s.unit
        s.ts.append(ts[ok])
        s.val.append(val[ok])
        s.start.append(start[ok] if start is not None else np.full(int(ok.sum()), np.nan))

    def hosts(self) -> set[str]:
        """Every host a stored sample would name."""
        return {h for h, _, _ in self.series}

    def parts(self) -> list[Part]:
        """Per host: its gauges and ready rates as a ``Batch``, its counters as ``RawCounters``."""
        by_host: dict[str, dict[str, list]] = {}
        for (host, kind, key), s in self.series.items():
            group = by_host.setdefault(host, {GAUGE: [], COUNTER: []})
            group[COUNTER if kind == COUNTER else GAUGE].append((key, s))
        return [self._part(h, g[GAUGE], g[COUNTER]) for h, g in sorted(by_host.items())]

    def _part(self, host: str, gauges: list, counters: list) -> Part:
        gauge_keys = {k for k, _ in gauges}
        for key, s in [c for c in counters if c[0] in gauge_keys]:
            n = sum(len(t) for t in s.ts)
            self.refuse(key[0], "a counter and a gauge or delta sum of one name", n)
        counters = [c for c in counters if c[0] not in gauge_keys]
        cols = [_sorted(s) for _, s in gauges]
        batch = empty_batch(host)
        if gauges:
            units = [s.unit for _, s in gauges]
            batch = concat(
                batch, [k for k, _ in gauges], units, [c[0] for c in cols], [c[1] for c in cols]
            )
        if not counters:
            return Part(batch, None)
        cols = [_sorted(s) for _, s in counters]
        counts = [len(c[0]) for c in cols]
        raw = RawCounters(
            keys=[k for k, _ in counters],
            units=[rate_unit(s.unit) for _, s in counters],
            sid=np.repeat(np.arange(len(counters), dtype=np.int64), counts),
            ts=np.concatenate([c[0] for c in cols]),
            val=np.concatenate([c[1] for c in cols]),
            start=np.concatenate([c[2] for c in cols]),
            oldest=self.oldest,
        )
        return Part(batch, raw)


def _sorted(s: _Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One series' samples in time order, one per timestamp (the last one sent wins)."""
    ts, val, start = (np.concatenate(x) for x in (s.ts, s.val, s.start))
    if len(ts) > 1 and not (np.diff(ts) > 0).all():
        order = np.argsort(ts, kind="stable")
        ts, val, start = ts[order], val[order], start[order]
        last = np.append(ts[1:] != ts[:-1], True)
        ts, val, start = ts[last], val[last], start[last]
    return ts, val, start
