import logging

import pytest

from agent.collectors.power import PowerCollector


class Clock:
    def __init__(self):
        self.t = 50.0

    def __call__(self):
        return self.t


def zone(root, name, label, energy, max_range=262143328850):
    d = root / "class" / "powercap" / name
    d.mkdir(parents=True)
    (d / "name").write_text(label + "\n")
    (d / "energy_uj").write_text(f"{energy}\n")
    (d / "max_energy_range_uj").write_text(f"{max_range}\n")
    return d


def test_rapl_package_energy_becomes_watts_and_wraps(tmp_path):
    p0 = zone(tmp_path, "intel-rapl:0", "package-0", 1_000_000, max_range=10_000_000)
    zone(tmp_path, "intel-rapl:0:0", "core", 5)  # a sub-zone: not a package
    zone(tmp_path, "intel-rapl:1", "psys", 5)  # platform zone: not a package
    p1 = zone(tmp_path, "intel-rapl:2", "package-1", 0)
    mono = Clock()
    c = PowerCollector(tmp_path, monotonic=mono)
    assert c.enabled
    assert c.collect(1.0) == []
    (p0 / "energy_uj").write_text("3100000\n")  # +2.1 J
    (p1 / "energy_uj").write_text("90000000\n")
    mono.t += 2.0
    got = {s.tags["package"]: (s.value, s.unit, s.metric) for s in c.collect(2.0)}
    assert got["0"] == (pytest.approx(1.05), "W", "power.cpu_package.watts")
    assert got["1"][0] == pytest.approx(45.0)
    (p0 / "energy_uj").write_text("100000\n")  # wrapped past 10,000,000
    mono.t += 1.0
    got = {s.tags["package"]: s.value for s in c.collect(3.0)}
    assert got["0"] == pytest.approx((10_000_000 - 3_100_000 + 100_000) / 1e6)


def test_no_powercap_switches_off_with_one_line(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="agent.collectors.power"):
        c = PowerCollector(tmp_path)
        assert c.collect(1.0) == [] and c.collect(2.0) == []
    assert not c.enabled and len(caplog.records) == 1


def test_unreadable_energy_switches_off(tmp_path, caplog):
    d = zone(tmp_path, "intel-rapl:0", "package-0", 1)
    (d / "energy_uj").chmod(0)
    try:
        (d / "energy_uj").read_text()
        pytest.skip("running as root: file modes do not stop reads")
    except PermissionError:
        pass
    with caplog.at_level(logging.INFO, logger="agent.collectors.power"):
        c = PowerCollector(tmp_path)
    assert not c.enabled and "not readable" in caplog.records[0].message
