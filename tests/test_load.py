"""Sustained load through a real gunicorn: throughput, latency, flat RSS and zero loss.

The 60-s version of ``bench/load.py`` (both drive ``harness.fleet``): 500 simulated agents x 40
series, replayed at 10x real time (windows in the recent past, sent back to back), then the
stored ``count`` fields summed over every window must equal the samples acknowledged by 200
answers, exactly.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import pytest

from harness.fleet import WINDOW, LoadConfig, create_tokens, run_load
from harness.procs import RssSampler
from harness.zeroloss import stored_influx, stored_sqlite
from tests.conftest import ADMIN, LiveApi, start_gunicorn, stop_gunicorn

INFLUX_STORE = importlib.util.find_spec("app.storage.influxdb.store") is not None


def check_zero_loss(res: dict, stored: dict, series: int) -> None:
    """Every acknowledged sample stored once: sums equal, no window above 30, no batch missing."""
    assert res["unacked_batches"] == 0, res
    assert res["rejected"] == 0, res
    assert res["acked"] == res["sent_samples"], res
    assert stored["sum"] == res["acked"], (stored, res["acked"])
    assert stored["max_count"] == WINDOW, stored  # 30 samples per window, never counted twice
    assert stored["windows"] == res["acked_batches"] * series, stored


def load_run(tmp_path: Path, storage_url: str | None, cfg: LoadConfig) -> tuple[dict, LiveApi]:
    """gunicorn (cores + 1 workers) on the store, the fleet against it, RSS sampled meanwhile."""
    api = start_gunicorn(
        tmp_path, workers=3, storage_url=storage_url, env_extra={"FLEETPULSE_LOG_LEVEL": "WARNING"}
    )
    try:
        tokens = create_tokens(api.url, cfg.prefix, cfg.hosts, ADMIN)
        box: dict = {}
        th = threading.Thread(target=lambda: box.update(run_load(api.url, tokens, cfg)))
        with RssSampler(api.proc.pid, 2.0) as rss:
            th.start()
            th.join()
        box.update(rss.summary(warmup=cfg.duration / 3))
    finally:
        stop_gunicorn(api.proc)
    return box, api


@pytest.mark.e2e
def test_load_60s_sqlite(tmp_path: Path) -> None:
    cfg = LoadConfig(hosts=500, series=40, duration=60, speed=10, clients=2, conns=8)
    res, api = load_run(tmp_path, None, cfg)
    print(
        f"\nload sqlite: {res['requests_per_s']:.1f} req/s, {res['samples_per_s']:,.0f} samples/s"
        f", p50 {res['p50_ms']:.1f} ms, p99 {res['p99_ms']:.1f} ms, max {res['max_ms']:.0f} ms, "
        f"errors {res['errors']}, RSS {res['rss_first_mib']:.0f}/{res['rss_warm_mib']:.0f}/"
        f"{res['rss_last_mib']:.0f} MiB"
    )
    assert res["error_count"] == 0, res["errors"]
    # 500 hosts at 10x = 166.7 batches/s offered; the server keeps up (delivery stays prompt)
    assert res["acked_batches"] == 500 * 20, res["acked_batches"]
    assert res["delivery_p99_s"] < 10, res["delivery_p99_s"]
    assert not res["rss_growth_flag"], res["rss_series"]
    stored = stored_sqlite(api.db_path)
    assert stored["integrity"] == "ok"
    check_zero_loss(res, stored, cfg.series)


@pytest.mark.e2e
@pytest.mark.influx
@pytest.mark.skipif(not INFLUX_STORE, reason="app/storage/influxdb.py is not there yet")
def test_load_30s_influxdb(tmp_path: Path, influxd) -> None:
    url = influxd.new_db_url()
    cfg = LoadConfig(hosts=200, series=40, duration=30, speed=10, clients=2, conns=8)
    res, _ = load_run(tmp_path, url, cfg)
    print(
        f"\nload influxdb: {res['requests_per_s']:.1f} req/s, {res['samples_per_s']:,.0f} "
        f"samples/s, p50 {res['p50_ms']:.1f} ms, p99 {res['p99_ms']:.1f} ms, errors {res['errors']}"
    )
    assert res["error_count"] == 0, res["errors"]
    assert not res["rss_growth_flag"], res["rss_series"]
    check_zero_loss(res, stored_influx(url), cfg.series)
