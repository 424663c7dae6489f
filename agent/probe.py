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

from agent.batcher import Batcher
from agent.config import Config, load
from agent.runner import Runner
from agent.samples import Sample
from agent.sender import Delivery, HttpClient
from agent.spool import Spool

log = logging.getLogger(__name__)

THREAD_PREFIX = "fleetpulse-probe:"


class ProbeCollector:
    """The host program's own figures; CPU percent is of one core (can exceed 100 with threads)."""

    name = "probe"

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
            out.append(Sample("probe.tracemalloc.current.bytes", tags, "B", ts, float(current)))
            out.append(Sample("probe.tracemalloc.peak.bytes", tags, "B", ts, float(peak)))
        if self._proc is not None:
            rss = float(self._proc.memory_info().rss)
            out.append(Sample("probe.rss.bytes", tags, "B", ts, rss))
        cpu_ns, mono_ns = time.process_time_ns(), time.monotonic_ns()
        if self._prev is not None and mono_ns > self._prev[1]:
            pct = 100.0 * (cpu_ns - self._prev[0]) / (mono_ns - self._prev[1])
            out.append(Sample("probe.cpu.percent", tags, "percent", ts, round(pct, 3)))
        self._prev = (cpu_ns, mono_ns)
        if self._gpu is not None:
            used = self._gpu.process_memory(self._pid)
            if used is not None:
                out.append(Sample("probe.gpu.memory.bytes", tags, "B", ts, used))
        return out


class Probe:
    """One probe: a sampling thread and a sending thread, both daemons."""

    def __init__(self, cfg: Config, service: str, trace_frames: int = 1) -> None:
        self.cfg = cfg
        self.service = service
        self._trace_frames = trace_frames
        self._started_tracing = False
        self._stop = threading.Event()
        self._send_stop = threading.Event()
        self.runner: Runner | None = None
        self.spool: Spool | None = None
        self.delivery: Delivery | None = None
        self._ready = threading.Event()
        self._stop_lock = threading.Lock()
        self._stopped = False
        self.thread = threading.Thread(target=self._main, name=THREAD_PREFIX + service, daemon=True)
        self.thread.probe = self  # type: ignore[attr-defined]  # stop() finds the probe here
        self._sender: threading.Thread | None = None

    def start(self) -> None:
        """Start tracing and the threads; returns at once."""
        if not tracemalloc.is_tracing() and self._trace_frames > 0:
            tracemalloc.start(self._trace_frames)
            self._started_tracing = True
        self.thread.start()

    def _setup(self) -> None:
        """Heavy set-up (NVML init, SQLite) happens on the probe's thread, not the caller's."""
        import psutil

        from agent.collectors import load_nvml

        pynvml = load_nvml()
        cfg = self.cfg
        spool = Spool(
            cfg.spool_dir / f"probe-{self.service}",
            cfg.spool_max_batches,
            int(cfg.spool_max_mb * 1024 * 1024),
        )
        delivery = Delivery(spool, HttpClient(cfg.url, cfg.token, cfg.timeout, cfg.ca_file))
        collector = ProbeCollector(self.service, pynvml, psutil)
        batcher = Batcher(cfg.host, cfg.window, spool.carry())
        self.spool, self.delivery = spool, delivery
        self.runner = Runner(
            [collector], batcher, spool, delivery, cfg.interval, spool_tags=collector.tags
        )
        self._sender = threading.Thread(
            target=delivery.run,
            args=(self._send_stop,),
            name="fleetpulse-probe-sender",
            daemon=True,
        )
        self._sender.start()

    def _main(self) -> None:
        try:
            self._setup()
        except Exception:
            log.exception("fleetpulse probe could not start; the program goes on without it")
            self._ready.set()
            return
        self._ready.set()
        try:
            assert self.runner is not None
            self.runner.run(self._stop)  # flushes every held window to the spool when stopped
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
        self._send_stop.set()
        if self.delivery is not None:
            self.delivery.wake.set()
            if self._sender is not None:
                self._sender.join(max(0.0, deadline - time.monotonic()))
            if self._sender is None or not self._sender.is_alive():
                try:
                    self.delivery.drain(deadline)
                except Exception:
                    log.exception("fleetpulse probe: final send failed; batches stay in the spool")
                self.delivery.client.close()
        if self.runner is not None:
            for c in self.runner.collectors:
                getattr(c, "close", lambda: None)()
        if self.spool is not None and not self.thread.is_alive():
            self.spool.close()
            self.spool = None
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
