"""What every collector is to the loop (the Collector protocol), its metric catalogue, rates."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, Protocol

from agent.samples import Sample, tag_value


class Metric(NamedTuple):
    """One catalogue entry: a collector only returns samples of metrics it declares."""

    name: str
    unit: str
    tags: tuple[str, ...] = ()

    def sample(self, tags: dict[str, str], ts: float, value: float) -> Sample:
        """A sample of this metric, so name and unit always come from the catalogue."""
        return Sample(self.name, tags, self.unit, ts, value)


class Collector(Protocol):
    """What the loop and the pipeline need from a collector, and nothing more."""

    name: str
    metrics: tuple[Metric, ...]  # every metric collect() can return
    enabled: bool  # False: switched off at set-up (missing hardware), already logged once

    def collect(self, now: float | None = None) -> list[Sample]:
        """One round of samples."""
        ...

    def close(self) -> None:
        """Release what set-up took (NVML, open files); the pipeline calls it at shutdown."""
        ...


class CollectorBase:
    """Defaults for collectors that hold nothing to release and are always on."""

    name: str = ""
    metrics: tuple[Metric, ...] = ()
    enabled: bool = True

    def close(self) -> None:
        """Nothing to release."""


class RateTracker:
    """Turn monotonically increasing counters into per-second rates between rounds."""

    def __init__(self) -> None:
        self._last: dict[object, tuple[float, float]] = {}

    def rate(self, key: object, counter: float, mono: float) -> float | None:
        """Rate since the previous call for key; None on the first call or a counter reset."""
        prev = self._last.get(key)
        self._last[key] = (counter, mono)
        if prev is None:
            return None
        dc, dt = counter - prev[0], mono - prev[1]
        if dt <= 0 or dc < 0:
            return None
        return dc / dt

    def forget_except(self, keys: set[object]) -> None:
        """Drop state of vanished devices so the table does not grow forever."""
        for key in [k for k in self._last if k not in keys]:
            del self._last[key]


Clock = Callable[[], float]


class CounterCollector(CollectorBase):
    """Collectors whose samples are per-second rates of psutil's per-device counters."""

    def __init__(
        self,
        psutil: Any,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ps = psutil
        self._clock = clock
        self._mono = monotonic
        self._rates = RateTracker()

    def rate_samples(
        self,
        counters: dict[str, Any],
        fields: Iterable[tuple[str, Metric]],
        tag: str,
        ts: float,
        mono: float,
    ) -> list[Sample]:
        """Rates of each device's counters since the last round; none on the first."""
        out: list[Sample] = []
        keys: set[object] = set()
        for dev, c in counters.items():
            tags = {tag: tag_value(dev)}
            for field, metric in fields:
                key = (dev, field)
                keys.add(key)
                r = self._rates.rate(key, float(getattr(c, field)), mono)
                if r is not None:
                    out.append(metric.sample(tags, ts, r))
        self._rates.forget_except(keys)
        return out
