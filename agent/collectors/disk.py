"""Disk collector: usage per real mount, throughput and IOPS per block device."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from agent.collectors.base import Clock, CounterCollector, Metric
from agent.samples import Sample, tag_value

log = logging.getLogger(__name__)

PSEUDO_FS = frozenset(
    {
        "proc", "sysfs", "devtmpfs", "devpts", "tmpfs", "ramfs", "cgroup", "cgroup2",
        "securityfs", "debugfs", "tracefs", "pstore", "bpf", "autofs", "configfs",
        "fusectl", "hugetlbfs", "mqueue", "binfmt_misc", "nsfs", "rpc_pipefs",
        "efivarfs", "selinuxfs", "squashfs", "fuse.lxcfs", "none",
        "fuse.portal", "fuse.gvfsd-fuse", "nfsd", "iso9660",
    }
)  # fmt: skip
SKIP_DEVICE_PREFIXES = ("loop", "ram", "zram", "sr", "fd")

IO_FIELDS = (  # psutil counter -> the rate metric made of it
    ("read_bytes", Metric("disk.read.bytes_per_s", "B/s", ("device",))),
    ("write_bytes", Metric("disk.write.bytes_per_s", "B/s", ("device",))),
    ("read_count", Metric("disk.read.iops", "ops/s", ("device",))),
    ("write_count", Metric("disk.write.iops", "ops/s", ("device",))),
)
USED = Metric("disk.used.bytes", "B", ("mount",))
FREE = Metric("disk.free.bytes", "B", ("mount",))
PERCENT = Metric("disk.percent", "percent", ("mount",))


class DiskCollector(CounterCollector):
    """The mount list is re-read every `mounts_every_s`, not every round: it rarely changes."""

    name = "disk"
    metrics = (USED, FREE, PERCENT, *(metric for _, metric in IO_FIELDS))

    def __init__(
        self,
        psutil: Any,
        mounts_every_s: float = 60.0,
        mounts_file: Path | None = None,
        rootfs: Path | None = None,
        **clocks: Clock,
    ) -> None:
        super().__init__(psutil, **clocks)
        self._mounts_every = mounts_every_s
        self._mounts: list[str] = []
        self._mounts_at: float | None = None
        self._mounts_file = mounts_file  # the host's mount table, when run in a container
        self._rootfs = rootfs  # where the host's / is mounted; usage is read through it

    def _partitions(self) -> list[tuple[str, str, str]]:
        """(device, mount point, fs type): psutil's list, or the host's mount table."""
        if self._mounts_file is None:
            return [(p.device, p.mountpoint, p.fstype) for p in self._ps.disk_partitions(all=True)]
        out = []
        for line in self._mounts_file.read_text().splitlines():
            f = line.split()
            if len(f) >= 3:
                out.append((f[0], f[1].replace("\\040", " "), f[2]))
        return out

    def _usage_path(self, mount: str) -> str:
        if self._rootfs is None:
            return mount
        return str(self._rootfs / mount.lstrip("/"))

    def _real_mounts(self) -> list[str]:
        seen: dict[str, str] = {}
        for device, mountpoint, fstype in self._partitions():
            if fstype in PSEUDO_FS:
                continue
            if fstype == "overlay" and mountpoint != "/":
                continue  # container layers; a container's own root is kept
            # a bind mount repeats the device: keep its shortest mount point
            known = seen.get(device)
            if known is None or len(mountpoint) < len(known):
                seen[device] = mountpoint
        return sorted(seen.values())

    def collect(self, now: float | None = None) -> list[Sample]:
        """One round of disk samples; rates from the second round on."""
        ts = self._clock() if now is None else now
        mono = self._mono()
        if self._mounts_at is None or mono - self._mounts_at >= self._mounts_every:
            self._mounts, self._mounts_at = self._real_mounts(), mono
        out: list[Sample] = []
        for mount in self._mounts:
            try:
                du = self._ps.disk_usage(self._usage_path(mount))
            except OSError:
                continue  # unmounted since the last listing
            tags = {"mount": tag_value(mount)}
            out.append(USED.sample(tags, ts, float(du.used)))
            out.append(FREE.sample(tags, ts, float(du.free)))
            out.append(PERCENT.sample(tags, ts, float(du.percent)))
        disks = self._ps.disk_io_counters(perdisk=True) or {}
        counters = {d: c for d, c in disks.items() if not d.startswith(SKIP_DEVICE_PREFIXES)}
        return out + self.rate_samples(counters, IO_FIELDS, "device", ts, mono)
