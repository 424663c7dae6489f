"""Memory collector: used, available, percent, swap used."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from agent.collectors.base import CollectorBase, Metric
from agent.samples import Sample

USED = Metric("mem.used.bytes", "B")
AVAILABLE = Metric("mem.available.bytes", "B")
PERCENT = Metric("mem.percent", "percent")
SWAP_USED = Metric("swap.used.bytes", "B")


class MemoryCollector(CollectorBase):
    """Reads psutil's virtual/swap memory, which are cheap single-file reads on Linux."""

    name = "memory"
    metrics = (USED, AVAILABLE, PERCENT, SWAP_USED)

    def __init__(self, psutil: Any, clock: Callable[[], float] = time.time) -> None:
        self._ps = psutil
        self._clock = clock

    def collect(self, now: float | None = None) -> list[Sample]:
        """One round of memory samples."""
        ts = self._clock() if now is None else now
        vm = self._ps.virtual_memory()
        out = [
            USED.sample({}, ts, float(vm.used)),
            AVAILABLE.sample({}, ts, float(vm.available)),
            PERCENT.sample({}, ts, float(vm.percent)),
        ]
        with contextlib.suppress(OSError, RuntimeError):  # no swap accounting here
            out.append(SWAP_USED.sample({}, ts, float(self._ps.swap_memory().used)))
        return out
