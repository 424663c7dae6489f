"""The one collector table: name -> factory(config, OS layer); config validation reads it too.

A factory imports its module only when it is called, so an agent with a collector switched
off never pays for it. Collectors read the machine only through the OsLayer they are given.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from agent.collectors.base import Collector, Metric

if TYPE_CHECKING:  # config imports this table: the type only, to avoid an import cycle
    from agent.config import Config

__all__ = ["COLLECTORS", "Collector", "Metric", "OsLayer", "build", "default_os_layer"]


@dataclass
class OsLayer:
    """What collectors read the machine through; tests pass canned stand-ins."""

    psutil: Any
    nvml: Any = None
    sysfs_root: Path = Path("/sys")
    proc_root: Path | None = Path("/proc")  # per-process files and the host's mount table
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
    FLEETPULSE_SYSFS, FLEETPULSE_ROOTFS). The paths travel in the layer to the collectors
    that read per-process or per-host files; psutil's process-wide PROCFS_PATH is left alone
    (the system-wide files it reads, /proc/stat, meminfo, diskstats, are the same in every
    PID namespace).
    """
    import psutil

    layer = OsLayer(psutil=psutil, nvml=load_nvml())
    if cfg is not None and cfg.procfs:
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


# The collectors, in the order they run each round; FLEETPULSE_COLLECTORS names a subset.
COLLECTORS: Mapping[str, Callable[[Config, OsLayer], Collector]] = MappingProxyType(
    {
        "cpu": _cpu,
        "memory": _memory,
        "disk": _disk,
        "network": _network,
        "gpu": _gpu,
        "power": _power,
        "processes": _processes,
    }
)


def build(cfg: Config, os_: OsLayer) -> list[Collector]:
    """Instantiate the configured collectors, leaving out those that switched themselves off."""
    out: list[Collector] = []
    for name in cfg.collectors:
        collector = COLLECTORS[name](cfg, os_)
        if collector.enabled:
            out.append(collector)
        else:
            collector.close()
    return out
