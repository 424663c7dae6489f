"""Every collector returns only metrics from its own declared catalogue (name, unit, tag keys)."""

import os
from types import SimpleNamespace

import psutil
import pytest

from agent.collectors import COLLECTORS
from agent.collectors.cpu import CpuCollector
from agent.collectors.disk import DiskCollector
from agent.collectors.gpu import GpuCollector
from agent.collectors.memory import MemoryCollector
from agent.collectors.network import NetworkCollector
from agent.collectors.power import PowerCollector
from agent.collectors.processes import ProcessCollector
from agent.config import parse_watch
from agent.names import MAX_TAGS, metric_error, tag_key_error
from agent.probe import ProbeCollector
from tests.agent_fixtures import FakeNvml
from tests.test_agent_collectors_cpu import FakePsutil as CpuPsutil
from tests.test_agent_collectors_cpu import t
from tests.test_agent_collectors_gpu import GPU0, GPU1
from tests.test_agent_collectors_network import nic
from tests.test_agent_collectors_power import zone
from tests.test_agent_collectors_processes import FakePsutil as ProcPsutil


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        self.t += 1.0
        return self.t


def cpu(tmp_path):
    rounds = [
        (t(100, 50, 800, 50), [t(50, 25, 400, 25), t(50, 25, 400, 25)]),
        (t(130, 60, 850, 60), [t(80, 35, 410, 25), t(50, 25, 440, 35)]),
    ]
    return CpuCollector(CpuPsutil(rounds))


def memory(tmp_path):
    return MemoryCollector(
        SimpleNamespace(
            virtual_memory=lambda: SimpleNamespace(used=1, available=2, percent=3.0),
            swap_memory=lambda: SimpleNamespace(used=4),
        )
    )


def disk(tmp_path):
    io = SimpleNamespace(read_bytes=1, write_bytes=2, read_count=3, write_count=4)
    ps = SimpleNamespace(
        disk_partitions=lambda all=False: [SimpleNamespace(device="/dev/vda", mountpoint="/",
                                                           fstype="ext4", opts="rw")],
        disk_usage=lambda path: SimpleNamespace(used=75, free=25, percent=75.0),
        disk_io_counters=lambda perdisk=False: {"vda": io},
    )  # fmt: skip
    return DiskCollector(ps, monotonic=Clock())


def network(tmp_path):
    rounds = [{"eth0": nic(1000, 2000, 10, 20, 0, 0)}, {"eth0": nic(1500, 3000, 15, 40, 1, 2)}]
    return NetworkCollector(
        SimpleNamespace(net_io_counters=lambda pernic=False: rounds.pop(0)), monotonic=Clock()
    )


def gpu(tmp_path):
    return GpuCollector(FakeNvml([GPU0, GPU1]))


def power(tmp_path):
    zone(tmp_path, "intel-rapl:0", "package-0", 1_000_000)
    return PowerCollector(tmp_path, monotonic=Clock())


def processes(tmp_path):
    table = {100: (1, "nginx", 2.0), 101: (100, "nginx", 2.0)}
    stats = {100: (1.0, 0.0, 1000), 101: (2.0, 0.0, 2000)}
    watch = parse_watch("web=nginx")
    return ProcessCollector(ProcPsutil(table, stats), watch, monotonic=Clock(), proc_root=None)


def probe(tmp_path):
    me = os.getpid()
    return ProbeCollector("svc", FakeNvml([{**GPU1, "procs": [(me, 1 << 20)]}]), psutil)


BUILDERS = {
    "cpu": cpu, "memory": memory, "disk": disk, "network": network, "gpu": gpu, "power": power,
    "processes": processes, "probe": probe,
}  # fmt: skip


def test_every_collector_of_the_table_is_checked_here():
    assert set(COLLECTORS) <= set(BUILDERS)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_samples_come_from_the_collectors_catalogue(name, tmp_path):
    c = BUILDERS[name](tmp_path)
    assert c.name == name and c.enabled
    catalogue = {m.name: m for m in c.metrics}
    assert len(catalogue) == len(c.metrics), "a metric is declared twice"
    seen = set()
    for now in (1.0, 2.0):  # rates and percents appear from the second round on
        for s in c.collect(now):
            assert s.metric in catalogue, f"{name} returned undeclared {s.metric}"
            m = catalogue[s.metric]
            assert s.unit == m.unit, s
            assert tuple(sorted(s.tags)) == tuple(sorted(m.tags)), s
            seen.add(s.metric)
    assert seen, f"{name} returned nothing with its fakes"
    c.close()


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_catalogues_follow_the_name_rules(name, tmp_path):
    c = BUILDERS[name](tmp_path)
    for m in c.metrics:
        assert metric_error(m.name) is None, m
        assert len(m.tags) <= MAX_TAGS and all(tag_key_error(k) is None for k in m.tags), m
        assert m.unit
    c.close()
