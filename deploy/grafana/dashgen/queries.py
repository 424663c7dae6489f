"""InfluxQL for the dashboards: every query stitches rp_30s (recent) and rp_30m (older)."""

from __future__ import annotations

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
        """The subquery over one retention policy, on its side of now() - $hires."""
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
    """Largest value per interval, from the windows' max fields."""
    return stitched(metric, 'max("max") AS "max"', '"max"', where, group_by)


def trough(metric: str, where: str = "", group_by: tuple[str, ...] = ("host",)) -> str:
    """Smallest value per interval, from the windows' min fields."""
    return stitched(metric, 'min("min") AS "min"', '"min"', where, group_by)


def energy(metric: str, where: str = "", group_by: tuple[str, ...] = ("host",)) -> str:
    """Watt-hours over the whole range (no time grouping), from energy_wh."""
    return stitched(
        metric, 'sum("energy_wh") AS "energy_wh"', '"energy_wh"', where, group_by, by_time=False
    )


def target(ref: str, query: str, alias: str = "", fmt: str = "time_series") -> dict:
    """A raw-InfluxQL Grafana target on the fleetpulse datasource."""
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
