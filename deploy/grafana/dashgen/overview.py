"""The fleet overview dashboard: every host on one screen, one line per host (or device)."""

from __future__ import annotations

from .panels import Layout, dashboard, energy_stat, last_seen_table, timeseries
from .queries import peak, target, tw_mean


def _cpu_and_memory(lay: Layout) -> None:
    """Row: CPU, memory and load of every host."""
    lay.row("CPU and memory")
    lay.add(
        timeseries(
            "CPU %",
            [target("A", tw_mean("cpu.percent", "\"cpu\" = 'total'"), "$tag_host")],
            "percent",
        )
    )
    lay.add(timeseries("Memory %", [target("A", tw_mean("mem.percent"), "$tag_host")], "percent"))
    lay.add(timeseries("Load (1 min)", [target("A", tw_mean("load.1m"), "$tag_host")], "short"))
    lay.add(
        timeseries(
            "Memory used",
            [target("A", tw_mean("mem.used.bytes"), "$tag_host")],
            "bytes",
        )
    )


def _disk_and_network(lay: Layout) -> None:
    """Row: the fullest mount, disk throughput and traffic per host."""
    lay.row("Disk and network")
    lay.add(
        timeseries(
            "Disk used % (fullest mount)",
            [target("A", peak("disk.percent"), "$tag_host")],
            "percent",
            "Highest disk.percent of any mount of the host.",
        )
    )
    lay.add(
        timeseries(
            "Disk throughput",
            [
                target(
                    "A",
                    tw_mean("disk.read.bytes_per_s", group_by=("host", "device")),
                    "$tag_host $tag_device read",
                ),
                target(
                    "B",
                    tw_mean("disk.write.bytes_per_s", group_by=("host", "device")),
                    "$tag_host $tag_device write",
                ),
            ],
            "Bps",
        )
    )
    lay.add(
        timeseries(
            "Network",
            [
                target(
                    "A",
                    tw_mean("net.recv.bytes_per_s", "\"interface\" != 'lo'", ("host", "interface")),
                    "$tag_host $tag_interface in",
                ),
                target(
                    "B",
                    tw_mean("net.sent.bytes_per_s", "\"interface\" != 'lo'", ("host", "interface")),
                    "$tag_host $tag_interface out",
                ),
            ],
            "Bps",
        ),
        w=24,
    )


def _gpu_and_power(lay: Layout) -> None:
    """Row: GPU utilization, memory, power and temperature per host."""
    lay.row("GPU and power")
    lay.add(
        timeseries(
            "GPU utilization %",
            [
                target(
                    "A",
                    tw_mean("gpu.utilization.percent", group_by=("host", "gpu")),
                    "$tag_host GPU $tag_gpu",
                )
            ],
            "percent",
        )
    )
    lay.add(
        timeseries(
            "GPU memory used",
            [
                target(
                    "A",
                    tw_mean("gpu.memory.used.bytes", group_by=("host", "gpu")),
                    "$tag_host GPU $tag_gpu",
                )
            ],
            "bytes",
        )
    )
    lay.add(
        timeseries(
            "Power",
            [
                target(
                    "A",
                    tw_mean("gpu.power.watts", group_by=("host", "gpu")),
                    "$tag_host GPU $tag_gpu",
                ),
                target(
                    "B",
                    tw_mean("power.cpu_package.watts", group_by=("host", "package")),
                    "$tag_host CPU package $tag_package",
                ),
            ],
            "watt",
        )
    )
    lay.add(
        timeseries(
            "GPU temperature (max)",
            [
                target(
                    "A",
                    peak("gpu.temperature.celsius", group_by=("host", "gpu")),
                    "$tag_host GPU $tag_gpu",
                )
            ],
            "celsius",
        )
    )


def fleet_overview() -> dict:
    """uid fleetpulse-overview: last seen and energy on top, then one row per subsystem."""
    lay = Layout()
    lay.add(last_seen_table("Hosts: last seen"), w=12, h=8)
    lay.add(energy_stat("Energy in range"), w=12, h=8)
    _cpu_and_memory(lay)
    _disk_and_network(lay)
    _gpu_and_power(lay)
    return dashboard(
        "fleetpulse-overview", "fleetpulse: fleet overview", lay.panels, False, "now-6h"
    )
