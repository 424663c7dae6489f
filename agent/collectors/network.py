"""Network collector: bytes, packets and errors per second per interface."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from agent.collectors.base import CollectorBase, Metric, RateTracker
from agent.samples import Sample, tag_value

FIELDS = (  # psutil counter -> the rate metric made of it
    ("bytes_recv", Metric("net.recv.bytes_per_s", "B/s", ("interface",))),
    ("bytes_sent", Metric("net.sent.bytes_per_s", "B/s", ("interface",))),
    ("packets_recv", Metric("net.recv.packets_per_s", "packets/s", ("interface",))),
    ("packets_sent", Metric("net.sent.packets_per_s", "packets/s", ("interface",))),
    ("errin", Metric("net.errors.in_per_s", "errors/s", ("interface",))),
    ("errout", Metric("net.errors.out_per_s", "errors/s", ("interface",))),
)


class NetworkCollector(CollectorBase):
    """Rates from counter deltas; the loopback interface is skipped by default."""

    name = "network"
    metrics = tuple(metric for _, metric in FIELDS)

    def __init__(
        self,
        psutil: Any,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        skip: Iterable[str] = ("lo",),
    ) -> None:
        self._ps = psutil
        self._clock = clock
        self._mono = monotonic
        self._skip = frozenset(skip)
        self._rates = RateTracker()

    def collect(self, now: float | None = None) -> list[Sample]:
        """One round; the first yields nothing since rates need two readings."""
        ts = self._clock() if now is None else now
        mono = self._mono()
        out: list[Sample] = []
        keys: set[object] = set()
        for nic, c in (self._ps.net_io_counters(pernic=True) or {}).items():
            if nic in self._skip:
                continue
            tags = {"interface": tag_value(nic)}
            for field, metric in FIELDS:
                key = (nic, field)
                keys.add(key)
                r = self._rates.rate(key, float(getattr(c, field)), mono)
                if r is not None:
                    out.append(metric.sample(tags, ts, r))
        self._rates.forget_except(keys)
        return out
