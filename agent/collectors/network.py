"""Network collector: bytes, packets and errors per second per interface."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agent.collectors.base import Clock, CounterCollector, Metric
from agent.samples import Sample

FIELDS = (  # psutil counter -> the rate metric made of it
    ("bytes_recv", Metric("net.recv.bytes_per_s", "B/s", ("interface",))),
    ("bytes_sent", Metric("net.sent.bytes_per_s", "B/s", ("interface",))),
    ("packets_recv", Metric("net.recv.packets_per_s", "packets/s", ("interface",))),
    ("packets_sent", Metric("net.sent.packets_per_s", "packets/s", ("interface",))),
    ("errin", Metric("net.errors.in_per_s", "errors/s", ("interface",))),
    ("errout", Metric("net.errors.out_per_s", "errors/s", ("interface",))),
)


class NetworkCollector(CounterCollector):
    """Rates from counter deltas; the loopback interface is skipped by default."""

    name = "network"
    metrics = tuple(metric for _, metric in FIELDS)

    def __init__(self, psutil: Any, skip: Iterable[str] = ("lo",), **clocks: Clock) -> None:
        super().__init__(psutil, **clocks)
        self._skip = frozenset(skip)

    def collect(self, now: float | None = None) -> list[Sample]:
        """One round; the first yields nothing since rates need two readings."""
        ts = self._clock() if now is None else now
        nics = self._ps.net_io_counters(pernic=True) or {}
        counters = {nic: c for nic, c in nics.items() if nic not in self._skip}
        return self.rate_samples(counters, FIELDS, "interface", ts, self._mono())
