from collections import namedtuple
from types import SimpleNamespace

import pytest

from agent.collectors.cpu import CpuCollector
from agent.collectors.memory import MemoryCollector

T = namedtuple("scputimes", "user nice system idle iowait irq softirq steal guest guest_nice")


def t(user, system, idle, iowait, guest=0.0):
    return T(user, 0.0, system, idle, iowait, 0.0, 0.0, 0.0, guest, 0.0)


class FakePsutil:
    def __init__(self, rounds):
        self.rounds = list(rounds)
        self.i = -1

    def cpu_times(self, percpu=False):
        if not percpu:
            self.i += 1
            return self.rounds[self.i][0]
        return self.rounds[self.i][1]

    def getloadavg(self):
        return (0.5, 0.25, 0.125)


def by_key(samples):
    return {(s.metric, tuple(sorted(s.tags.items()))): s for s in samples}


def test_cpu_percentages_come_from_deltas_and_first_round_has_only_load():
    ps = FakePsutil(
        [
            (t(100, 50, 800, 50), [t(50, 25, 400, 25), t(50, 25, 400, 25)]),
            # +30 user, +10 system, +50 idle, +10 iowait (guest 5 is inside user: not counted)
            (t(130, 60, 850, 60, guest=5), [t(80, 35, 410, 25), t(50, 25, 440, 35)]),
        ]
    )
    c = CpuCollector(ps)
    first = c.collect(1000.0)
    assert sorted(s.metric for s in first) == ["load.15m", "load.1m", "load.5m"]
    got = by_key(c.collect(1001.0))
    assert got[("cpu.percent", (("cpu", "total"),))].value == pytest.approx(40.0)
    assert got[("cpu.user.percent", (("cpu", "total"),))].value == pytest.approx(30.0)
    assert got[("cpu.system.percent", (("cpu", "total"),))].value == pytest.approx(10.0)
    assert got[("cpu.iowait.percent", (("cpu", "total"),))].value == pytest.approx(10.0)
    assert got[("cpu.percent", (("cpu", "0"),))].value == pytest.approx(80.0)  # 40 busy of 50
    assert got[("cpu.percent", (("cpu", "1"),))].value == pytest.approx(0.0)
    assert got[("load.1m", ())].value == 0.5
    assert all(s.ts == 1001.0 for s in got.values())
    assert got[("cpu.percent", (("cpu", "total"),))].unit == "percent"


def test_cpu_core_count_change_skips_per_core_once():
    ps = FakePsutil(
        [
            (t(1, 1, 1, 0), [t(1, 1, 1, 0)]),
            (t(2, 2, 2, 0), [t(1, 1, 1, 0), t(1, 1, 1, 0)]),
        ]
    )
    c = CpuCollector(ps)
    c.collect(1.0)
    metrics = [(s.metric, s.tags.get("cpu")) for s in c.collect(2.0)]
    assert ("cpu.percent", "total") in metrics
    assert ("cpu.percent", "0") not in metrics


def test_memory_collector_reads_used_available_percent_swap():
    ps = SimpleNamespace(
        virtual_memory=lambda: SimpleNamespace(used=1000, available=3000, percent=25.0),
        swap_memory=lambda: SimpleNamespace(used=42),
    )
    got = {s.metric: (s.value, s.unit) for s in MemoryCollector(ps).collect(5.0)}
    assert got == {
        "mem.used.bytes": (1000.0, "B"),
        "mem.available.bytes": (3000.0, "B"),
        "mem.percent": (25.0, "percent"),
        "swap.used.bytes": (42.0, "B"),
    }


def test_memory_collector_without_swap_accounting():
    def no_swap():
        raise RuntimeError("no swap")

    ps = SimpleNamespace(
        virtual_memory=lambda: SimpleNamespace(used=1, available=2, percent=3.0),
        swap_memory=no_swap,
    )
    assert "swap.used.bytes" not in {s.metric for s in MemoryCollector(ps).collect(1.0)}
