"""A real Prometheus remote-writing a real node_exporter's series to a real gunicorn."""

from __future__ import annotations

import os
import shutil
import time
from collections import defaultdict
from pathlib import Path

import pytest

from harness.prometheus import PromPair
from harness.server import LiveApi
from tests.conftest import unique_host

pytestmark = pytest.mark.e2e


def _meminfo_total() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return float(line.split()[1]) * 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


def _cpu_sums(state: list[dict]) -> dict[tuple[str, float], tuple[int, float]]:
    """(cpu, time) -> (modes, sum of their rates), from the newest rate sample of each series."""
    out: dict = defaultdict(lambda: (0, 0.0))
    for s in state:
        if s["metric"] == "node_cpu_seconds_total.rate":
            n, total = out[(s["tags"]["cpu"], s["time"])]
            out[(s["tags"]["cpu"], s["time"])] = (n + 1, total + s["value"])
    return out


def _windows(api: LiveApi, host: str, metric: str) -> list[dict]:
    now = time.time()
    params = {"host": host, "metric": metric, "start": now - 600, "end": now + 60}
    r = api.request("GET", "/api/v1/series", api.admin_token, params=params)
    assert r.status_code == 200, r.text
    return [p for s in r.json()["series"] for p in s["points"]]


def test_prometheus_remote_write_of_node_exporter(live_api_any, tmp_path: Path) -> None:
    live_api = live_api_any
    for binary in ("prometheus", "prometheus-node-exporter"):
        if shutil.which(binary) is None:
            why = f"{binary} is not installed (apt-get install {binary})"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(f"CI=true but {why}")  # .ci/run installs both
            pytest.skip(why)
    host = unique_host()
    pair = PromPair(tmp_path, live_api.url, live_api.token_for("agent", host), host)
    pair.start()
    try:
        deadline, state = time.time() + 40, []
        while time.time() < deadline:
            r = live_api.request("GET", f"/api/v1/hosts/{host}", live_api.admin_token)
            state = r.json()["series"] if r.status_code == 200 else []
            sums = _cpu_sums(state)
            if sums and max(n for n, _ in sums.values()) >= 8:
                break
            time.sleep(0.5)
    finally:
        pair.stop()
    by_metric = {s["metric"]: s for s in state}
    assert by_metric["node_memory_memtotal_bytes"]["value"] == _meminfo_total()
    assert by_metric["node_memory_memtotal_bytes"]["unit"] == "bytes"
    mem = _windows(live_api, host, "node_memory_memtotal_bytes")  # the stored 30 s windows
    assert mem and all(p["min"] == p["max"] == _meminfo_total() for p in mem), mem
    assert all(p["count"] >= 1 and 0 < p["covered"] <= 30 for p in mem), mem
    full = [total for n, total in _cpu_sums(state).values() if n >= 8]  # every mode, one scrape
    assert full, state
    for total in full:
        assert total == pytest.approx(1.0, abs=0.15)  # CPU seconds per second, over the modes
