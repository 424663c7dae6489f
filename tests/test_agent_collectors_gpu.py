import inspect
import logging

import pynvml
import pytest

from agent.collectors.gpu import GpuCollector
from tests.agent_fixtures import FakeNvml

GPU0 = {
    "util": 87, "total": 80 << 30, "used": 10 << 30, "temp": 64, "power_mw": 312_500,
    "sm": 1980, "mem": 2619, "procs": [(4242, 6 << 30), (4343, None)], "gprocs": [(4242, 6 << 30)],
}  # fmt: skip
GPU1 = {"util": 0, "total": 80 << 30, "used": 0, "temp": 30, "power_mw": 60_000, "sm": 210,
        "mem": 405}  # fmt: skip


def test_fake_mirrors_the_real_pynvml_signatures():
    fake = FakeNvml()
    for name in dir(fake):
        if name.startswith("nvml"):
            real = inspect.signature(getattr(pynvml, name))
            mine = inspect.signature(getattr(fake, name))
            assert list(real.parameters) == list(mine.parameters), name
    assert fake.NVMLError is pynvml.NVMLError
    assert fake.NVML_ERROR_NOT_SUPPORTED == pynvml.NVML_ERROR_NOT_SUPPORTED


def test_all_fields_per_gpu_and_per_process_memory():
    nvml = FakeNvml([GPU0, GPU1])
    c = GpuCollector(nvml)
    assert c.enabled and nvml.calls.count("nvmlInit") == 1
    got = {(s.metric, tuple(sorted(s.tags.items()))): (s.value, s.unit) for s in c.collect(9.0)}
    g0 = (("gpu", "0"),)
    assert got[("gpu.utilization.percent", g0)] == (87.0, "percent")
    assert got[("gpu.memory.used.bytes", g0)] == (float(10 << 30), "B")
    assert got[("gpu.memory.total.bytes", g0)] == (float(80 << 30), "B")
    assert got[("gpu.temperature.celsius", g0)] == (64.0, "celsius")
    assert got[("gpu.power.watts", g0)] == (312.5, "W")
    assert got[("gpu.clock.sm.mhz", g0)] == (1980.0, "MHz")
    assert got[("gpu.clock.mem.mhz", g0)] == (2619.0, "MHz")
    assert got[("gpu.process.memory.bytes", (("gpu", "0"), ("pid", "4242")))] == (6 << 30, "B")
    # usedGpuMemory None (not available) is skipped, not reported as 0
    assert ("gpu.process.memory.bytes", (("gpu", "0"), ("pid", "4343"))) not in got
    assert got[("gpu.power.watts", (("gpu", "1"),))] == (60.0, "W")
    c.collect(10.0)
    assert nvml.calls.count("nvmlInit") == 1  # initialised once, not per round
    c.close()
    assert nvml.calls.count("nvmlShutdown") == 1


def test_one_failing_field_is_skipped_not_the_sample(caplog):
    nvml = FakeNvml(
        [GPU0],
        fail={
            "nvmlDeviceGetPowerUsage": pynvml.NVML_ERROR_NOT_SUPPORTED,
            "nvmlDeviceGetTemperature": pynvml.NVML_ERROR_UNKNOWN,
        },
    )
    c = GpuCollector(nvml)
    with caplog.at_level(logging.INFO):
        metrics = {s.metric for s in c.collect(1.0)}
        c.collect(2.0)
    assert "gpu.power.watts" not in metrics and "gpu.temperature.celsius" not in metrics
    assert {"gpu.utilization.percent", "gpu.memory.used.bytes", "gpu.clock.sm.mhz"} <= metrics
    # NOT_SUPPORTED is asked once only; a transient error is asked again next round
    assert nvml.calls.count("nvmlDeviceGetPowerUsage") == 1
    assert nvml.calls.count("nvmlDeviceGetTemperature") == 2
    assert sum("not supported" in r.message for r in caplog.records) == 1


@pytest.mark.parametrize(
    "code", [pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, pynvml.NVML_ERROR_DRIVER_NOT_LOADED]
)
def test_no_driver_switches_off_with_one_log_line(caplog, code):
    nvml = FakeNvml([GPU0], fail={"nvmlInit": code})
    with caplog.at_level(logging.INFO, logger="agent.collectors.gpu"):
        c = GpuCollector(nvml)
        assert c.collect(1.0) == [] and c.collect(2.0) == []
    assert not c.enabled
    assert len(caplog.records) == 1 and "gpu collector off" in caplog.records[0].message
    assert "nvmlDeviceGetUtilizationRates" not in nvml.calls


def test_no_gpu_switches_off(caplog):
    with caplog.at_level(logging.INFO, logger="agent.collectors.gpu"):
        c = GpuCollector(FakeNvml([]))
    assert not c.enabled and len(caplog.records) == 1


def test_real_pynvml_on_a_machine_without_nvidia_driver(caplog):
    """This machine has no GPU: the real library must switch the collector off, quietly."""
    with caplog.at_level(logging.INFO, logger="agent.collectors.gpu"):
        c = GpuCollector(pynvml)
    if c.enabled:  # pragma: no cover - only on a machine with a GPU
        assert any(s.metric == "gpu.memory.total.bytes" for s in c.collect(1.0))
        c.close()
    else:
        assert c.collect(1.0) == [] and len(caplog.records) == 1


def test_process_memory_for_the_probe():
    c = GpuCollector(FakeNvml([GPU0, {**GPU1, "procs": [(4242, 1 << 30)]}]))
    assert c.process_memory(4242) == float((6 << 30) + (1 << 30))
    assert c.process_memory(1) == 0.0
