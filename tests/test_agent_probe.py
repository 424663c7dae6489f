import os
import threading
import time
import tracemalloc

import psutil
import pytest

from agent import probe
from agent.probe import ProbeCollector
from tests.agent_fixtures import FakeNvml


@pytest.fixture
def probe_env(monkeypatch, tmp_path):
    for k in list(os.environ):
        if k.startswith("FLEETPULSE_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("FLEETPULSE_WINDOW", "1")
    monkeypatch.setenv("FLEETPULSE_HOST", "probe-host")
    monkeypatch.setenv("FLEETPULSE_SPOOL_DIR", str(tmp_path / "spool"))
    yield
    probe.stop(1.0)


def test_probe_ships_its_own_memory_and_cpu(probe_env, fake_api):
    was_tracing = tracemalloc.is_tracing()
    p = probe.start(service="train-job", url=fake_api.url, token="t", interval=0.05)
    assert p is not None and tracemalloc.is_tracing()
    assert probe.start(service="train-job") is p  # one probe per service
    hoard = [bytearray(10_000) for _ in range(500)]  # ~5 MB traced
    end = time.process_time() + 0.3
    while time.process_time() < end:  # burn CPU so the percent is visibly > 0
        pass
    time.sleep(1.3)
    probe.stop()
    assert not any(t.name.startswith("fleetpulse-probe") for t in threading.enumerate())
    assert tracemalloc.is_tracing() == was_tracing
    series = {}
    for r in fake_api.delivered():
        assert r["body"]["host"] == "probe-host"
        for s in r["body"]["series"]:
            assert s["tags"] == {"service": "train-job"}
            series.setdefault(s["metric"], []).extend(v for _, v in s["points"])
    assert set(series) == {
        "agent.spool.pending",  # the probe's own spool, tagged with its service
        "agent.spool.dropped",
        "probe.tracemalloc.current.bytes",
        "probe.tracemalloc.peak.bytes",
        "probe.rss.bytes",
        "probe.cpu.percent",
    }
    assert max(series["probe.tracemalloc.peak.bytes"]) > 4_000_000
    assert max(series["probe.cpu.percent"]) > 10
    assert min(series["probe.rss.bytes"]) > 10_000_000
    del hoard


def test_probe_never_blocks_the_program_when_the_api_is_down(probe_env, closed_port_url, tmp_path):
    p = probe.start(service="svc", url=closed_port_url, interval=0.05)
    time.sleep(1.3)
    t0 = time.monotonic()
    probe.stop(timeout=2.0)
    assert time.monotonic() - t0 < 2.5
    from agent.spool import Spool

    assert Spool(tmp_path / "spool" / "probe-svc").pending() >= 1  # kept for later
    assert p is not None


def test_bad_configuration_does_not_raise_into_the_program(probe_env, monkeypatch):
    monkeypatch.setenv("FLEETPULSE_INTERVAL", "often")
    assert probe.start(service="x") is None


def test_probe_gpu_memory_through_nvml():
    me = os.getpid()
    gpu = {"util": 1, "total": 1, "used": 1, "temp": 1, "power_mw": 1, "sm": 1, "mem": 1,
           "procs": [(me, 3 << 20)], "gprocs": [(me, 3 << 20)]}  # fmt: skip
    c = ProbeCollector(
        "svc", FakeNvml([gpu, {**gpu, "procs": [(me, 1 << 20)], "gprocs": []}]), psutil
    )
    got = {s.metric: s.value for s in c.collect(1.0)}
    assert got["probe.gpu.memory.bytes"] == float((3 << 20) + (1 << 20))
    assert "probe.cpu.percent" not in got  # needs two rounds
    assert "probe.cpu.percent" in {s.metric for s in c.collect(2.0)}
    c.close()
