"""NVIDIA GPU collector through NVML (the `pynvml` module of the nvidia-ml-py package)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from agent.collectors.base import CollectorBase, Metric
from agent.samples import Sample

log = logging.getLogger(__name__)

MIB = 1024 * 1024

UTILIZATION = Metric("gpu.utilization.percent", "percent", ("gpu",))
MEMORY_USED = Metric("gpu.memory.used.bytes", "B", ("gpu",))
MEMORY_TOTAL = Metric("gpu.memory.total.bytes", "B", ("gpu",))
TEMPERATURE = Metric("gpu.temperature.celsius", "celsius", ("gpu",))
POWER = Metric("gpu.power.watts", "W", ("gpu",))
CLOCK_SM = Metric("gpu.clock.sm.mhz", "MHz", ("gpu",))
CLOCK_MEM = Metric("gpu.clock.mem.mhz", "MHz", ("gpu",))
PROCESS_MEMORY = Metric("gpu.process.memory.bytes", "B", ("gpu", "pid"))


class GpuCollector(CollectorBase):
    """NVML is initialised once here; without a driver or a GPU the collector is off (one line)."""

    name = "gpu"
    metrics = (
        UTILIZATION, MEMORY_USED, MEMORY_TOTAL, TEMPERATURE, POWER, CLOCK_SM, CLOCK_MEM,
        PROCESS_MEMORY,
    )  # fmt: skip

    def __init__(self, nvml: Any, clock: Callable[[], float] = time.time) -> None:
        self._nvml = nvml
        self._clock = clock
        self._handles: list[Any] = []
        self._unsupported: set[tuple[int, str]] = set()
        self.enabled = False
        if nvml is None:
            log.info("gpu collector off: no NVIDIA driver loaded or nvidia-ml-py not installed")
            return
        try:
            nvml.nvmlInit()
            count = nvml.nvmlDeviceGetCount()
            self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except nvml.NVMLError as exc:
            log.info("gpu collector off: NVML unavailable (%s)", exc)
            return
        except OSError as exc:  # a broken libnvidia-ml can fail below NVML's own error type
            log.info("gpu collector off: NVML unavailable (%s)", exc)
            return
        if not self._handles:
            log.info("gpu collector off: NVML found no GPU")
            self._shutdown()
            return
        self.enabled = True
        log.info("gpu collector on: %d GPU(s)", len(self._handles))

    def _shutdown(self) -> None:
        with contextlib.suppress(self._nvml.NVMLError):
            self._nvml.nvmlShutdown()

    def close(self) -> None:
        """Release NVML at agent shutdown."""
        if self.enabled:
            self.enabled = False
            self._shutdown()

    def _field(self, idx: int, field: str, fn: Callable[[], Any]) -> Any:
        """A failure skips this field only; NOT_SUPPORTED is not asked again."""
        if (idx, field) in self._unsupported:
            return None
        nvml = self._nvml
        try:
            return fn()
        except nvml.NVMLError as exc:
            if getattr(exc, "value", None) == nvml.NVML_ERROR_NOT_SUPPORTED:
                self._unsupported.add((idx, field))
                log.info("gpu %d: %s not supported, skipped from now on", idx, field)
            else:
                log.debug("gpu %d: %s failed: %s", idx, field, exc)
            return None

    def collect(self, now: float | None = None) -> list[Sample]:
        """One round over every GPU; empty when the collector is off."""
        if not self.enabled:
            return []
        ts = self._clock() if now is None else now
        out: list[Sample] = []
        for idx, h in enumerate(self._handles):
            self._device(idx, h, ts, out)
        return out

    def _device(self, idx: int, h: Any, ts: float, out: list[Sample]) -> None:
        """One GPU's samples; each field that fails is left out alone."""
        nvml = self._nvml
        tags = {"gpu": str(idx)}
        util = self._field(idx, "utilization", lambda: nvml.nvmlDeviceGetUtilizationRates(h))
        if util is not None:
            out.append(UTILIZATION.sample(tags, ts, float(util.gpu)))
        mem = self._field(idx, "memory", lambda: nvml.nvmlDeviceGetMemoryInfo(h))
        if mem is not None:
            out.append(MEMORY_USED.sample(tags, ts, float(mem.used)))
            out.append(MEMORY_TOTAL.sample(tags, ts, float(mem.total)))
        temp = self._field(
            idx,
            "temperature",
            lambda: nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU),
        )
        if temp is not None:
            out.append(TEMPERATURE.sample(tags, ts, float(temp)))
        mw = self._field(idx, "power", lambda: nvml.nvmlDeviceGetPowerUsage(h))
        if mw is not None:
            out.append(POWER.sample(tags, ts, mw / 1000.0))
        for clock_id, field, metric in (
            (nvml.NVML_CLOCK_SM, "clock_sm", CLOCK_SM),
            (nvml.NVML_CLOCK_MEM, "clock_mem", CLOCK_MEM),
        ):
            mhz = self._field(idx, field, lambda c=clock_id: nvml.nvmlDeviceGetClockInfo(h, c))
            if mhz is not None:
                out.append(metric.sample(tags, ts, float(mhz)))
        per_pid: dict[int, int] = {}
        for field, fn in (
            ("compute_procs", nvml.nvmlDeviceGetComputeRunningProcesses),
            ("graphics_procs", nvml.nvmlDeviceGetGraphicsRunningProcesses),
        ):
            for p in self._field(idx, field, lambda fn=fn: fn(h)) or []:
                used = getattr(p, "usedGpuMemory", None)
                if used is not None:  # None: not available (e.g. Windows WDDM, MIG)
                    per_pid[p.pid] = max(per_pid.get(p.pid, 0), int(used))
        for pid, used in sorted(per_pid.items()):
            out.append(PROCESS_MEMORY.sample({**tags, "pid": str(pid)}, ts, used))

    def process_memory(self, pid: int) -> float | None:
        """GPU memory a process holds on all GPUs (the probe's own figure); None if unknown."""
        if not self.enabled:
            return None
        nvml = self._nvml
        total, seen = 0, False
        for idx, h in enumerate(self._handles):
            on_this_gpu = 0  # a process in both lists holds the same memory: take it once
            for field, fn in (
                ("compute_procs", nvml.nvmlDeviceGetComputeRunningProcesses),
                ("graphics_procs", nvml.nvmlDeviceGetGraphicsRunningProcesses),
            ):
                for p in self._field(idx, field, lambda h=h, fn=fn: fn(h)) or []:
                    if p.pid == pid and getattr(p, "usedGpuMemory", None) is not None:
                        on_this_gpu = max(on_this_gpu, int(p.usedGpuMemory))
                        seen = True
            total += on_this_gpu
        return float(total) if seen else 0.0
