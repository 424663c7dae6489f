"""Grafana panel, variable and dashboard JSON, and the layout that places panels on the grid."""

from __future__ import annotations

from .queries import DATASOURCE, energy, target


class Layout:
    """Hands out panel ids and grid positions, two panels per row by default."""

    def __init__(self) -> None:
        self.panels: list[dict] = []
        self.x = 0
        self.y = 0
        self.row_h = 0

    def add(self, panel: dict, w: int = 12, h: int = 8) -> None:
        """Place ``panel`` after the last one, on a new row when it does not fit."""
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel["id"] = len(self.panels) + 1
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)

    def row(self, title: str) -> None:
        """A collapsible row header across the grid; the next panels go below it."""
        if self.x:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        self.add({"type": "row", "title": title, "collapsed": False, "panels": []}, w=24, h=1)
        self.x, self.y, self.row_h = 0, self.y + 1, 0


def timeseries(title: str, targets: list[dict], unit: str, description: str = "") -> dict:
    """A time-series panel (percent from 0, MHz without decimals), legend with mean and max."""
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
    """A table of each host's newest 30-s window: when a host went quiet shows at once."""
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
    """Watt-hours of GPUs and CPU packages over the range: what the fleet cost in energy."""
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
    """The $hires switch (where rp_30s ends) and, for one-host dashboards, $host."""
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
    """The dashboard JSON around the panels: uid, tags, links to its siblings, refresh."""
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
