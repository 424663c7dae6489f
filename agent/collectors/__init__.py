"""The collector registry: name -> factory(config, os_layer) building one collector."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agent.config import Config
from agent.samples import Sample

log = logging.getLogger(__name__)


class Collector(Protocol):
    """What the runner needs from a collector."""

    name: str

    def collect(self, now: float | None = None) -> list[Sample]:
        """One round of samples."""
        ...


@dataclass
class OsLayer:
    """What collectors read the machine through; tests pass canned stand-ins."""

    psutil: Any
    nvml: Any = None
    sysfs_root: Path = Path("/sys")
    proc_root: Path | None = Path("/proc")
    rootfs: Path | None = None  # the host's / seen from a container; None = this machine


def load_nvml() -> Any:
    """pynvml, or None where no NVIDIA driver is loaded: importing it costs ~5 MB of RSS."""
    if sys.platform.startswith("linux") and not os.path.exists("/proc/driver/nvidia/version"):
        return None
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def default_os_layer(cfg: Config | None = None) -> OsLayer:
    """The real machine: psutil, pynvml where a driver is loaded, /sys and /proc.

    In a container the host's /proc, /sys and / are mounted elsewhere (FLEETPULSE_PROCFS,
    FLEETPULSE_SYSFS, FLEETPULSE_ROOTFS); psutil reads /proc through ``PROCFS_PATH``.
    """
    import psutil

    layer = OsLayer(psutil=psutil, nvml=load_nvml())
    if cfg is not None and cfg.procfs:
        psutil.PROCFS_PATH = cfg.procfs
        layer.proc_root = Path(cfg.procfs)
    if cfg is not None and cfg.sysfs:
        layer.sysfs_root = Path(cfg.sysfs)
    if cfg is not None and cfg.rootfs:
        layer.rootfs = Path(cfg.rootfs)
    return layer


def _cpu(cfg: Config, os_: OsLayer) -> Collector:
    from agent.collectors.cpu import CpuCollector

    return CpuCollector(os_.psutil)


def _memory(cfg: Config, os_: OsLayer) -> Collector:
    from agent.collectors.memory import MemoryCollector

    return MemoryCollector(os_.psutil)


def _disk(cfg: Config, os_: OsLayer) -> Collector:
    from agent.collectors.disk import DiskCollector

    if os_.rootfs is not None and os_.proc_root is not None:
        # The host's mount table is PID 1's; usage is measured through the rootfs mount.
        return DiskCollector(
            os_.psutil, mounts_file=os_.proc_root / "1" / "mounts", rootfs=os_.rootfs
        )
    return DiskCollector(os_.psutil)


def _network(cfg: Config, os_: OsLayer) -> Collector:
    from agent.collectors.network import NetworkCollector

    return NetworkCollector(os_.psutil)


def _gpu(cfg: Config, os_: OsLayer) -> Collector:
    from agent.collectors.gpu import GpuCollector

    return GpuCollector(os_.nvml)


def _power(cfg: Config, os_: OsLayer) -> Collector:
    from agent.collectors.power import PowerCollector

    return PowerCollector(os_.sysfs_root)


def _processes(cfg: Config, os_: OsLayer) -> Collector:
    from agent.collectors.processes import ProcessCollector

    return ProcessCollector(
        os_.psutil, cfg.watch, refresh_s=cfg.proc_refresh, proc_root=os_.proc_root
    )


REGISTRY: dict[str, Callable[[Config, OsLayer], Collector]] = {
    "cpu": _cpu,
    "memory": _memory,
    "disk": _disk,
    "network": _network,
    "gpu": _gpu,
    "power": _power,
    "processes": _processes,
}


def build(cfg: Config, os_: OsLayer) -> list[Collector]:
    """Instantiate the configured collectors, leaving out those that switched themselves off."""
    out: list[Collector] = []
    for name in cfg.collectors:
        collector = REGISTRY[name](cfg, os_)
        if getattr(collector, "enabled", True):
            out.append(collector)
        elif name == "processes":
            log.info("processes collector off: nothing to watch (FLEETPULSE_WATCH is empty)")
    return out
