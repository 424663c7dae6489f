"""The host detail dashboard: every metric the agent sends, for the one host in ``$host``."""

from __future__ import annotations

from .panels import Layout, dashboard, energy_stat, last_seen_table, timeseries
from .queries import HOST_FILTER, peak, target, trough, tw_mean


def _and(extra: str) -> str:
    """The host filter and one more condition."""
    return f"{HOST_FILTER} AND {extra}"


def _series(metric: str, where: str = "", by: tuple[str, ...] = ()) -> str:
    """Time-weighted mean of one of the host's metrics, optionally filtered and grouped."""
    return tw_mean(metric, _and(where) if where else HOST_FILTER, by)


def _cpu(lay: Layout) -> None:
    """Row: CPU total and per core, load, package power."""
    h = HOST_FILTER
    lay.row("CPU")
    lay.add(
        timeseries(
            "CPU %",
            [
                target("A", tw_mean("cpu.percent", _and("\"cpu\" = 'total'"), ()), "total (mean)"),
                target("B", peak("cpu.percent", _and("\"cpu\" = 'total'"), ()), "total (max)"),
                target("C", trough("cpu.percent", _and("\"cpu\" = 'total'"), ()), "total (min)"),
                target("D", tw_mean("cpu.user.percent", _and("\"cpu\" = 'total'"), ()), "user"),
                target("E", tw_mean("cpu.system.percent", _and("\"cpu\" = 'total'"), ()), "system"),
                target("F", tw_mean("cpu.iowait.percent", _and("\"cpu\" = 'total'"), ()), "iowait"),
            ],
            "percent",
        )
    )
    lay.add(
        timeseries(
            "CPU % per core",
            [
                target(
                    "A",
                    tw_mean("cpu.percent", _and("\"cpu\" != 'total'"), ("cpu",)),
                    "cpu $tag_cpu",
                )
            ],
            "percent",
        )
    )
    lay.add(
        timeseries(
            "Load",
            [
                target("A", _series("load.1m"), "1 min"),
                target("B", _series("load.5m"), "5 min"),
                target("C", _series("load.15m"), "15 min"),
            ],
            "short",
        )
    )
    lay.add(
        timeseries(
            "CPU package power",
            [
                target(
                    "A", tw_mean("power.cpu_package.watts", h, ("package",)), "package $tag_package"
                )
            ],
            "watt",
        )
    )


def _memory(lay: Layout) -> None:
    """Row: memory and swap."""
    lay.row("Memory")
    lay.add(
        timeseries(
            "Memory",
            [
                target("A", _series("mem.used.bytes"), "used"),
                target("B", _series("mem.available.bytes"), "available"),
                target("C", _series("swap.used.bytes"), "swap used"),
            ],
            "bytes",
        )
    )
    lay.add(timeseries("Memory %", [target("A", _series("mem.percent"), "used %")], "percent"))


def _disks(lay: Layout) -> None:
    """Row: space, throughput and IOPS per mount or device."""
    h = HOST_FILTER
    lay.row("Disks")
    lay.add(
        timeseries(
            "Disk used % per mount",
            [target("A", tw_mean("disk.percent", h, ("mount",)), "$tag_mount")],
            "percent",
        )
    )
    lay.add(
        timeseries(
            "Disk space per mount",
            [
                target("A", tw_mean("disk.used.bytes", h, ("mount",)), "$tag_mount used"),
                target("B", tw_mean("disk.free.bytes", h, ("mount",)), "$tag_mount free"),
            ],
            "bytes",
        )
    )
    lay.add(
        timeseries(
            "Disk throughput",
            [
                target("A", tw_mean("disk.read.bytes_per_s", h, ("device",)), "$tag_device read"),
                target("B", tw_mean("disk.write.bytes_per_s", h, ("device",)), "$tag_device write"),
            ],
            "Bps",
        )
    )
    lay.add(
        timeseries(
            "Disk IOPS",
            [
                target("A", tw_mean("disk.read.iops", h, ("device",)), "$tag_device read"),
                target("B", tw_mean("disk.write.iops", h, ("device",)), "$tag_device write"),
            ],
            "iops",
        )
    )


def _network(lay: Layout) -> None:
    """Row: traffic, packets and errors per interface."""
    h = HOST_FILTER
    lay.row("Network")
    lay.add(
        timeseries(
            "Network throughput",
            [
                target(
                    "A", tw_mean("net.recv.bytes_per_s", h, ("interface",)), "$tag_interface in"
                ),
                target(
                    "B", tw_mean("net.sent.bytes_per_s", h, ("interface",)), "$tag_interface out"
                ),
            ],
            "Bps",
        )
    )
    lay.add(
        timeseries(
            "Network packets and errors",
            [
                target(
                    "A",
                    tw_mean("net.recv.packets_per_s", h, ("interface",)),
                    "$tag_interface packets in",
                ),
                target(
                    "B",
                    tw_mean("net.sent.packets_per_s", h, ("interface",)),
                    "$tag_interface packets out",
                ),
                target(
                    "C",
                    tw_mean("net.errors.in_per_s", h, ("interface",)),
                    "$tag_interface errors in",
                ),
                target(
                    "D",
                    tw_mean("net.errors.out_per_s", h, ("interface",)),
                    "$tag_interface errors out",
                ),
            ],
            "pps",
        )
    )


def _gpu(lay: Layout) -> None:
    """Row: utilization, memory, power, temperature, clocks per GPU."""
    h = HOST_FILTER
    lay.row("GPU")
    lay.add(
        timeseries(
            "GPU utilization %",
            [target("A", tw_mean("gpu.utilization.percent", h, ("gpu",)), "GPU $tag_gpu")],
            "percent",
        )
    )
    lay.add(
        timeseries(
            "GPU memory",
            [
                target("A", tw_mean("gpu.memory.used.bytes", h, ("gpu",)), "GPU $tag_gpu used"),
                target("B", tw_mean("gpu.memory.total.bytes", h, ("gpu",)), "GPU $tag_gpu total"),
            ],
            "bytes",
        )
    )
    lay.add(
        timeseries(
            "GPU power",
            [target("A", tw_mean("gpu.power.watts", h, ("gpu",)), "GPU $tag_gpu")],
            "watt",
        )
    )
    lay.add(
        timeseries(
            "GPU temperature",
            [
                target("A", tw_mean("gpu.temperature.celsius", h, ("gpu",)), "GPU $tag_gpu"),
                target("B", peak("gpu.temperature.celsius", h, ("gpu",)), "GPU $tag_gpu (max)"),
            ],
            "celsius",
        )
    )
    lay.add(
        timeseries(
            "GPU clocks",
            [
                target("A", tw_mean("gpu.clock.sm.mhz", h, ("gpu",)), "GPU $tag_gpu SM"),
                target("B", tw_mean("gpu.clock.mem.mhz", h, ("gpu",)), "GPU $tag_gpu memory"),
            ],
            "suffix: MHz",
        )
    )
    lay.add(
        timeseries(
            "GPU memory per process",
            [
                target(
                    "A",
                    tw_mean("gpu.process.memory.bytes", h, ("gpu", "pid")),
                    "GPU $tag_gpu pid $tag_pid",
                )
            ],
            "bytes",
        )
    )


def _processes(lay: Layout) -> None:
    """Row: CPU and RSS of the watched processes."""
    h = HOST_FILTER
    lay.row("Processes")
    lay.add(
        timeseries(
            "Process CPU %",
            [target("A", tw_mean("proc.cpu.percent", h, ("process",)), "$tag_process")],
            "percent",
        )
    )
    lay.add(
        timeseries(
            "Process memory (RSS)",
            [target("A", tw_mean("proc.rss.bytes", h, ("process",)), "$tag_process")],
            "bytes",
        )
    )


def host_detail() -> dict:
    """uid fleetpulse-host: last seen and energy on top, then one row per subsystem."""
    h = HOST_FILTER
    lay = Layout()
    lay.add(last_seen_table("Last seen", h), w=8, h=5)
    lay.add(energy_stat("Energy in range", h, ()), w=16, h=5)
    for add_row in (_cpu, _memory, _disks, _network, _gpu, _processes):
        add_row(lay)
    return dashboard("fleetpulse-host", "fleetpulse: host detail", lay.panels, True, "now-3h")
