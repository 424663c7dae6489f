"""CPU collector: total and per-core busy percent, user/system/iowait split, load averages."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from agent.collectors.base import CollectorBase, Metric
from agent.samples import Sample

_NOT_COUNTED = ("guest", "guest_nice")  # already included in user/nice on Linux

PERCENT = Metric("cpu.percent", "percent", ("cpu",))  # cpu: "total" or the core's index
USER = Metric("cpu.user.percent", "percent", ("cpu",))
SYSTEM = Metric("cpu.system.percent", "percent", ("cpu",))
IOWAIT = Metric("cpu.iowait.percent", "percent", ("cpu",))
LOADS = (Metric("load.1m", "load"), Metric("load.5m", "load"), Metric("load.15m", "load"))


def _total(times: Any) -> float:
    return sum(v for k, v in times._asdict().items() if k not in _NOT_COUNTED)


def _idle(times: Any) -> float:
    return times.idle + getattr(times, "iowait", 0.0)


class CpuCollector(CollectorBase):
    """Computes percentages from /proc/stat deltas itself, so no hidden psutil state is shared."""

    name = "cpu"
    metrics = (PERCENT, USER, SYSTEM, IOWAIT, *LOADS)

    def __init__(self, psutil: Any, clock: Callable[[], float] = time.time) -> None:
        self._ps = psutil
        self._clock = clock
        self._prev_total: Any = None
        self._prev_cores: list[Any] = []

    def collect(self, now: float | None = None) -> list[Sample]:
        """One round; percentages appear from the second round on."""
        ts = self._clock() if now is None else now
        total = self._ps.cpu_times()
        cores = self._ps.cpu_times(percpu=True)
        out: list[Sample] = []
        prev = self._prev_total
        if prev is not None:
            dt = _total(total) - _total(prev)
            if dt > 0:
                busy = dt - (_idle(total) - _idle(prev))
                out.append(PERCENT.sample({"cpu": "total"}, ts, _pct(busy, dt)))
                for field, metric in (("user", USER), ("system", SYSTEM), ("iowait", IOWAIT)):
                    if hasattr(total, field):
                        d = getattr(total, field) - getattr(prev, field)
                        out.append(metric.sample({"cpu": "total"}, ts, _pct(d, dt)))
        if len(self._prev_cores) == len(cores):
            for i, (cur, old) in enumerate(zip(cores, self._prev_cores, strict=True)):
                dt = _total(cur) - _total(old)
                if dt > 0:
                    busy = dt - (_idle(cur) - _idle(old))
                    pct = _pct(busy, dt)
                    out.append(PERCENT.sample({"cpu": str(i)}, ts, pct))
        self._prev_total, self._prev_cores = total, list(cores)
        try:
            loads = self._ps.getloadavg()
        except (AttributeError, OSError):
            loads = None
        if loads is not None:
            for metric, val in zip(LOADS, loads, strict=True):
                out.append(metric.sample({}, ts, float(val)))
        return out


def _pct(part: float, whole: float) -> float:
    return round(min(100.0, max(0.0, 100.0 * part / whole)), 3)
