"""Memory collector: used, available, percent, swap used."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from agent.samples import Sample


class MemoryCollector:
    """Reads psutil's virtual/swap memory, which are cheap single-file reads on Linux."""

    name = "memory"

    def __init__(self, psutil: Any, clock: Callable[[], float] = time.time) -> None:
        self._ps = psutil
        self._clock = clock

    def collect(self, now: float | None = None) -> list[Sample]:
        """One round of memory samples."""
        ts = self._clock() if now is None else now
        vm = self._ps.virtual_memory()
        out = [
            Sample("mem.used.bytes", {}, "B", ts, float(vm.used)),
            Sample("mem.available.bytes", {}, "B", ts, float(vm.available)),
            Sample("mem.percent", {}, "percent", ts, float(vm.percent)),
        ]
        with contextlib.suppress(OSError, RuntimeError):  # no swap accounting here
            out.append(Sample("swap.used.bytes", {}, "B", ts, float(self._ps.swap_memory().used)))
        return out
