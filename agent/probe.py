"""In-process probe: `from agent import probe; probe.start(service="train-job")`.

Samples the host program's own memory (tracemalloc current/peak, RSS), its CPU percent
(time.process_time_ns() against time.monotonic_ns()) and its GPU memory, and ships them
through the agent's sending path (batches per 30-s window, its own spool, backoff) on daemon
threads. Nothing here raises into the host program: errors are logged and the probe goes quiet.
The running probe is held by its thread (no module-level state): stop() finds it there.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path
from typing import Any

from agent.collectors.base import CollectorBase, Metric
from agent.config import Config, load
from agent.pipeline import Pipeline
from agent.samples import Sample

log = logging.getLogger(__name__)

THREAD_PREFIX = "fleetpulse-probe:"

TRACED_CURRENT = Metric("probe.tracemalloc.current.bytes", "B", ("service",))
TRACED_PEAK = Metric("probe.tracemalloc.peak.bytes", "B", ("service",))
RSS = Metric("probe.rss.bytes", "B", ("service",))
CPU_PERCENT = Metric("probe.cpu.percent", "percent", ("service",))
GPU_MEMORY = Metric("probe.gpu.memory.bytes", "B", ("service",))


class ProbeCollector(CollectorBase):
    """The host program's own figures; CPU percent is of one core (can exceed 100 with threads)."""

    name = "probe"
    metrics = (TRACED_CURRENT, TRACED_PEAK, RSS, CPU_PERCENT, GPU_MEMORY)

    def __init__(self, service: str, nvml: Any = None, psutil: Any = None) -> None:
        self.tags = {"service": service}
        self._pid = os.getpid()
        self._proc = psutil.Process(self._pid) if psutil is not None else None
        self._gpu = None
        if nvml is not None:
            from agent.collectors.gpu import GpuCollector

            gpu = GpuCollector(nvml)
            self._gpu = gpu if gpu.enabled else None
        self._prev: tuple[int, int] | None = None

    def close(self) -> None:
        """Release NVML."""
        if self._gpu is not None:
            self._gpu.close()

    def collect(self, now: float | None = None) -> list[Sample]:
        """One round of the program's own samples."""
        ts = time.time() if now is None else now
        tags = self.tags
        out: list[Sample] = []
        if tracemalloc.is_tracing():
            current, peak = tracemalloc.get_traced_memory()
            out.append(TRACED_CURRENT.sample(tags, ts, float(current)))
            out.append(TRACED_PEAK.sample(tags, ts, float(peak)))
        if self._proc is not None:
            out.append(RSS.sample(tags, ts, float(self._proc.memory_info().rss)))
        cpu_ns, mono_ns = time.process_time_ns(), time.monotonic_ns()
        if self._prev is not None and mono_ns > self._prev[1]:
            pct = 100.0 * (cpu_ns - self._prev[0]) / (mono_ns - self._prev[1])
            out.append(CPU_PERCENT.sample(tags, ts, round(pct, 3)))
        self._prev = (cpu_ns, mono_ns)
        if self._gpu is not None:
            used = self._gpu.process_memory(self._pid)
            if used is not None:
                out.append(GPU_MEMORY.sample(tags, ts, used))
        return out


class Probe:
    """One probe: a sampling thread and a sending thread, both daemons."""

    def __init__(self, cfg: Config, service: str, trace_frames: int = 1) -> None:
        self.cfg = cfg
        self.service = service
        self._trace_frames = trace_frames
        self._started_tracing = False
        self._stop = threading.Event()
        self.pipeline: Pipeline | None = None
        self._ready = threading.Event()
        self._stop_lock = threading.Lock()
        self._stopped = False
        self.thread = threading.Thread(target=self._main, name=THREAD_PREFIX + service, daemon=True)
        self.thread.probe = self  # type: ignore[attr-defined]  # stop() finds the probe here

    def start(self) -> None:
        """Start tracing and the threads; returns at once."""
        if not tracemalloc.is_tracing() and self._trace_frames > 0:
            tracemalloc.start(self._trace_frames)
            self._started_tracing = True
        self.thread.start()

    def _setup(self) -> Pipeline:
        """Heavy set-up (NVML init, SQLite) happens on the probe's thread, not the caller's."""
        import psutil

        from agent.collectors import load_nvml

        def collectors() -> list[ProbeCollector]:
            return [ProbeCollector(self.service, load_nvml(), psutil)]

        return Pipeline(
            self.cfg,
            collectors,
            spool_dir=self.cfg.spool_dir / f"probe-{self.service}",
            spool_tags={"service": self.service},
            sender_name="fleetpulse-probe-sender",
        )

    def _main(self) -> None:
        try:
            self.pipeline = self._setup()
        except Exception:
            log.exception("fleetpulse probe could not start; the program goes on without it")
            return
        finally:
            self._ready.set()
        try:
            self.pipeline.run(self._stop)  # flushes every held window to the spool when stopped
        except Exception:
            log.exception("fleetpulse probe stopped on an error; the program goes on")

    def stop(self, timeout: float = 5.0) -> None:
        """Flush held samples to the spool and send what can be sent within the timeout."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        deadline = time.monotonic() + timeout
        self._ready.wait(max(0.0, deadline - time.monotonic()))
        self._stop.set()
        self.thread.join(max(0.0, deadline - time.monotonic()))
        if self.pipeline is not None:
            self.pipeline.close(deadline)
        if self._started_tracing:
            tracemalloc.stop()
            self._started_tracing = False


def _running() -> list[Probe]:
    return [
        t.probe  # type: ignore[attr-defined]
        for t in threading.enumerate()
        if t.name.startswith(THREAD_PREFIX) and hasattr(t, "probe")
    ]


def start(
    service: str,
    *,
    url: str | None = None,
    token: str | None = None,
    host: str | None = None,
    interval: float | None = None,
    spool_dir: str | Path | None = None,
    trace_frames: int = 1,
) -> Probe | None:
    """Start probing this program; settings default to the agent's FLEETPULSE_* environment."""
    try:
        for p in _running():
            if p.service == service:
                return p
        cfg = load()
        changes: dict[str, Any] = {}
        if url is not None:
            changes["url"] = url.rstrip("/")
        if token is not None:
            changes["token"] = token
        if host is not None:
            changes["host"] = host
        if interval is not None:
            changes["interval"] = float(interval)
        if spool_dir is not None:
            changes["spool_dir"] = Path(spool_dir)
        cfg = replace(cfg, **changes)
        probe = Probe(cfg, service, trace_frames)
        probe.start()
        atexit.register(probe.stop, 2.0)
        return probe
    except Exception:
        log.exception("fleetpulse probe not started; the program goes on without it")
        return None


def stop(timeout: float = 5.0) -> None:
    """Stop every running probe, flushing their samples (to the API or to the spool)."""
    for p in _running():
        try:
            p.stop(timeout)
        except Exception:
            log.exception("fleetpulse probe: error while stopping")
