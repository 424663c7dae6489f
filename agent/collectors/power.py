"""CPU package power from Linux RAPL energy counters (/sys/class/powercap) in watts."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path

from agent.collectors.base import CollectorBase, Metric
from agent.samples import Sample

log = logging.getLogger(__name__)

ZONE_RE = re.compile(r"[a-z]+-rapl:\d+")  # top-level zones only (sub-zones have two colons)
PACKAGE_WATTS = Metric("power.cpu_package.watts", "W", ("package",))


class PowerCollector(CollectorBase):
    """Energy counters wrap at max_energy_range_uj; the wrap is undone before dividing by time."""

    name = "power"
    metrics = (PACKAGE_WATTS,)

    def __init__(
        self,
        sysfs_root: str | Path = "/sys",
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._mono = monotonic
        self._zones: list[tuple[str, Path, float]] = []
        self._prev: dict[str, tuple[int, float]] = {}
        base = Path(sysfs_root) / "class" / "powercap"
        reason = "no RAPL package zone under " + str(base)
        try:
            entries = sorted(base.iterdir()) if base.is_dir() else []
        except OSError:
            entries = []
        for zone in entries:
            if not ZONE_RE.fullmatch(zone.name):
                continue
            try:
                label = (zone / "name").read_text().strip()
                if not label.startswith("package"):
                    continue
                int((zone / "energy_uj").read_text())
                try:
                    max_range = float((zone / "max_energy_range_uj").read_text())
                except (OSError, ValueError):
                    max_range = 0.0
            except PermissionError:
                reason = f"{zone}/energy_uj is not readable (root only on recent kernels)"
                continue
            except (OSError, ValueError):
                continue
            package = label.split("-", 1)[1] if "-" in label else zone.name.split(":")[-1]
            self._zones.append((package, zone / "energy_uj", max_range))
        self.enabled = bool(self._zones)
        if not self.enabled:
            log.info("power collector off: %s", reason)

    def collect(self, now: float | None = None) -> list[Sample]:
        """Watts per package from the second round on."""
        if not self.enabled:
            return []
        ts = self._clock() if now is None else now
        out: list[Sample] = []
        for package, path, max_range in self._zones:
            try:
                uj = int(path.read_text())
            except (OSError, ValueError):
                continue
            mono = self._mono()
            prev = self._prev.get(package)
            self._prev[package] = (uj, mono)
            if prev is None or mono <= prev[1]:
                continue
            delta = uj - prev[0]
            if delta < 0:
                if max_range <= 0:
                    continue
                delta += max_range
            watts = delta / 1e6 / (mono - prev[1])
            out.append(PACKAGE_WATTS.sample({"package": package}, ts, watts))
        return out
