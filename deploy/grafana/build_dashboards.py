"""Generate the Grafana dashboards in deploy/grafana/dashboards/ (InfluxQL).

    .venv/bin/python deploy/grafana/build_dashboards.py          # rewrite the JSON files
    .venv/bin/python deploy/grafana/build_dashboards.py --check  # exit 1 if they are stale

Every time-series query reads the 30-second series (`rp_30s`) for the recent past and
the 30-minute series (`rp_30m`) for what is older, in one InfluxQL statement with two
subqueries split at `now() - $hires` (a dashboard variable): see README.md here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "influxdb", "uid": "fleetpulse-influxdb"}
HOST_FILTER = "\"host\" = '$host'"


def stitched(
    metric: str,
    select: str,
    fields: str,
    where: str = "",
    group_by: tuple[str, ...] = ("host",),
    by_time: bool = True,
) -> str:
    """One InfluxQL query over rp_30s (newer than now() - $hires) and rp_30m (older)."""
    cond = f" AND {where}" if where else ""

    def sub(rp: str, op: str) -> str:
        return (
            f'SELECT {fields} FROM "{rp}"."{metric}" '
            f"WHERE $timeFilter AND time {op} now() - $hires{cond}"
        )

    groups = [*(["time($__interval)"] if by_time else []), *(f'"{t}"' for t in group_by)]
    group = f" GROUP BY {', '.join(groups)}" if groups else ""
    fill = " fill(none)" if by_time else ""
    return (
        f"SELECT {select} FROM ({sub('rp_30s', '>')}), ({sub('rp_30m', '<=')}) "
        f"WHERE $timeFilter{group}{fill}"
    )


def tw_mean(metric: str, where: str = "", group_by: tuple[str, ...] = ("host",)) -> str:
    """Time-weighted mean per interval: sum(integral) / sum(covered), exact across both series."""
    return stitched(
        metric,
        'sum("integral") / sum("covered") AS "mean"',
        '"integral", "covered"',
        where,
        group_by,
    )


def peak(metric: str, where: str = "", group_by: tuple[str, ...] = ("host",)) -> str:
    return stitched(metric, 'max("max") AS "max"', '"max"', where, group_by)


def trough(metric: str, where: str = "", group_by: tuple[str, ...] = ("host",)) -> str:
    return stitched(metric, 'min("min") AS "min"', '"min"', where, group_by)


def energy(metric: str, where: str = "", group_by: tuple[str, ...] = ("host",)) -> str:
    return stitched(
        metric, 'sum("energy_wh") AS "energy_wh"', '"energy_wh"', where, group_by, by_time=False
    )


def target(ref: str, query: str, alias: str = "", fmt: str = "time_series") -> dict:
    t = {
        "refId": ref,
        "datasource": DATASOURCE,
        "rawQuery": True,
        "query": query,
        "resultFormat": fmt,
    }
    if alias:
        t["alias"] = alias
    return t


class Layout:
    """Hands out panel ids and grid positions, two panels per row by default."""

    def __init__(self) -> None:
        self.panels: list[dict] = []
        self.x = 0
        self.y = 0
        self.row_h = 0

    def add(self, panel: dict, w: int = 12, h: int = 8) -> None:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel["id"] = len(self.panels) + 1
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)

    def row(self, title: str) -> None:
        if self.x:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        self.add({"type": "row", "title": title, "collapsed": False, "panels": []}, w=24, h=1)
        self.x, self.y, self.row_h = 0, self.y + 1, 0


def timeseries(title: str, targets: list[dict], unit: str, description: str = "") -> dict:
    defaults: dict = {"unit": unit, "custom": {"spanNulls": True, "fillOpacity": 5}}
    if unit == "percent":
        defaults["min"] = 0
    if unit.startswith("suffix:"):
        defaults["decimals"] = 0
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def last_seen_table(title: str, where: str = "") -> dict:
    cond = f" AND {where}" if where else ""
    query = (
        'SELECT last("last") AS "cpu_percent" FROM "rp_30s"."cpu.percent" '
        f'WHERE "cpu" = \'total\'{cond} GROUP BY "host"'
    )
    return {
        "type": "table",
        "title": title,
        "description": "Newest 30-second window of cpu.percent (total) per host; "
        "InfluxDB stamps windows with their start.",
        "datasource": DATASOURCE,
        "targets": [target("A", query, fmt="table")],
        "fieldConfig": {"defaults": {"unit": "none"}, "overrides": []},
        "options": {"showHeader": True, "sortBy": [{"displayName": "Time", "desc": False}]},
        "transformations": [
            {
                "id": "organize",
                "options": {
                    "indexByName": {"host": 0, "Time": 1, "cpu_percent": 2},
                    "renameByName": {
                        "Time": "Last seen (window start)",
                        "cpu_percent": "CPU % (last)",
                    },
                },
            }
        ],
    }


def energy_stat(title: str, where: str = "", by: tuple[str, ...] = ("host",)) -> dict:
    tag = " ".join(f"$tag_{t}" for t in by)
    return {
        "type": "stat",
        "title": title,
        "description": "Watt-hours over the dashboard's time range (sum of energy_wh).",
        "datasource": DATASOURCE,
        "targets": [
            target("A", energy("gpu.power.watts", where, (*by, "gpu")), f"{tag} GPU $tag_gpu"),
            target(
                "B",
                energy("power.cpu_package.watts", where, (*by, "package")),
                f"{tag} CPU package $tag_package",
            ),
        ],
        "fieldConfig": {"defaults": {"unit": "watth", "decimals": 1}, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["sum"], "fields": "", "values": False},
            "textMode": "value_and_name",
            "colorMode": "none",
            "graphMode": "none",
        },
    }


def variables(with_host: bool) -> list[dict]:
    options = ["6h", "1d", "2d", "7d"]
    out: list[dict] = [
        {
            "name": "hires",
            "label": "30 s data for the last",
            "type": "custom",
            "description": "Younger points come from rp_30s, older ones from rp_30m. "
            "Keep it at or below FLEETPULSE_30S_RETENTION.",
            "query": ",".join(options),
            "current": {"selected": True, "text": "1d", "value": "1d"},
            "options": [{"selected": o == "1d", "text": o, "value": o} for o in options],
            "hide": 0,
            "multi": False,
            "includeAll": False,
        }
    ]
    if with_host:
        query = 'SHOW TAG VALUES FROM "rp_30s"."cpu.percent" WITH KEY = "host"'
        out.insert(
            0,
            {
                "name": "host",
                "label": "Host",
                "type": "query",
                "datasource": DATASOURCE,
                "query": query,
                "definition": query,
                "refresh": 1,
                "sort": 1,
                "multi": False,
                "includeAll": False,
                "hide": 0,
                "current": {},
                "options": [],
            },
        )
    return out


def dashboard(uid: str, title: str, panels: list[dict], with_host: bool, time_from: str) -> dict:
    return {
        "uid": uid,
        "title": title,
        "tags": ["fleetpulse"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "annotations": {"list": []},
        "links": [
            {
                "type": "dashboards",
                "tags": ["fleetpulse"],
                "asDropdown": False,
                "includeVars": False,
                "keepTime": True,
                "title": "fleetpulse",
            }
        ],
        "templating": {"list": variables(with_host)},
        "panels": panels,
    }


def fleet_overview() -> dict:
    lay = Layout()
    lay.add(last_seen_table("Hosts: last seen"), w=12, h=8)
    lay.add(energy_stat("Energy in range"), w=12, h=8)
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
    return dashboard(
        "fleetpulse-overview", "fleetpulse: fleet overview", lay.panels, False, "now-6h"
    )


def host_detail() -> dict:
    h = HOST_FILTER

    def f(extra: str) -> str:
        return f"{h} AND {extra}"

    def series(metric: str, where: str = "", by: tuple[str, ...] = ()) -> str:
        return tw_mean(metric, f(where) if where else h, by)

    lay = Layout()
    lay.add(last_seen_table("Last seen", h), w=8, h=5)
    lay.add(energy_stat("Energy in range", h, ()), w=16, h=5)
    lay.row("CPU")
    lay.add(
        timeseries(
            "CPU %",
            [
                target("A", tw_mean("cpu.percent", f("\"cpu\" = 'total'"), ()), "total (mean)"),
                target("B", peak("cpu.percent", f("\"cpu\" = 'total'"), ()), "total (max)"),
                target("C", trough("cpu.percent", f("\"cpu\" = 'total'"), ()), "total (min)"),
                target("D", tw_mean("cpu.user.percent", f("\"cpu\" = 'total'"), ()), "user"),
                target("E", tw_mean("cpu.system.percent", f("\"cpu\" = 'total'"), ()), "system"),
                target("F", tw_mean("cpu.iowait.percent", f("\"cpu\" = 'total'"), ()), "iowait"),
            ],
            "percent",
        )
    )
    lay.add(
        timeseries(
            "CPU % per core",
            [
                target(
                    "A", tw_mean("cpu.percent", f("\"cpu\" != 'total'"), ("cpu",)), "cpu $tag_cpu"
                )
            ],
            "percent",
        )
    )
    lay.add(
        timeseries(
            "Load",
            [
                target("A", series("load.1m"), "1 min"),
                target("B", series("load.5m"), "5 min"),
                target("C", series("load.15m"), "15 min"),
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
    lay.row("Memory")
    lay.add(
        timeseries(
            "Memory",
            [
                target("A", series("mem.used.bytes"), "used"),
                target("B", series("mem.available.bytes"), "available"),
                target("C", series("swap.used.bytes"), "swap used"),
            ],
            "bytes",
        )
    )
    lay.add(timeseries("Memory %", [target("A", series("mem.percent"), "used %")], "percent"))
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
    return dashboard("fleetpulse-host", "fleetpulse: host detail", lay.panels, True, "now-3h")


DASHBOARDS = {
    "fleet-overview.json": fleet_overview,
    "host-detail.json": host_detail,
}


def render() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2) + "\n" for name, build in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = OUT_DIR / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print("stale dashboards (run build_dashboards.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
