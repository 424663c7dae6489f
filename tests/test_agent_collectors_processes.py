import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import psutil
import pytest

from agent.collectors.processes import ProcessCollector, scan_proc
from agent.config import parse_watch


class NoSuchProcess(Exception):
    pass


class AccessDenied(Exception):
    pass


class FakeProc:
    def __init__(self, ps, pid):
        self.ps, self.pid = ps, pid

    def oneshot(self):
        import contextlib

        return contextlib.nullcontext()

    def cpu_times(self):
        if self.pid in self.ps.dead:
            raise NoSuchProcess(self.pid)
        user, system, _rss = self.ps.stats[self.pid]
        return SimpleNamespace(user=user, system=system)

    def memory_info(self):
        return SimpleNamespace(rss=self.ps.stats[self.pid][2])

    def cmdline(self):
        return self.ps.cmdlines.get(self.pid, [])


class FakePsutil:
    """Canned process table: pid -> (ppid, name, create_time); stats pid -> (user, sys, rss)."""

    NoSuchProcess = NoSuchProcess
    AccessDenied = AccessDenied

    def __init__(self, table, stats, cmdlines=None):
        self.table, self.stats, self.cmdlines = table, stats, cmdlines or {}
        self.dead = set()
        self.scans = 0

    def process_iter(self, attrs):
        self.scans += 1
        for pid, (ppid, name, ct) in self.table.items():
            yield SimpleNamespace(pid=pid, info={"ppid": ppid, "name": name, "create_time": ct})

    def Process(self, pid):
        return FakeProc(self, pid)


class Clock:
    def __init__(self):
        self.t = 10.0

    def __call__(self):
        return self.t


def test_groups_include_children_and_refresh_at_a_lower_rate():
    table = {
        1: (0, "init", 1.0),
        100: (1, "nginx", 2.0),
        101: (100, "nginx", 2.0),
        102: (101, "helper", 2.0),  # a grandchild counts too
        200: (1, "postgres", 3.0),
        300: (1, "python3", 4.0),
    }
    stats = {
        1: (9.0, 9.0, 1),
        100: (1.0, 0.0, 1000),
        101: (2.0, 0.0, 2000),
        102: (0.0, 0.0, 4000),
        200: (5.0, 5.0, 10),
        300: (0.0, 0.0, 77),
    }
    ps = FakePsutil(table, stats, cmdlines={300: ["python3", "train.py", "--fast"]})
    mono = Clock()
    watch = parse_watch("web=nginx,db=pid:200,train=cmd:*train.py*")
    c = ProcessCollector(ps, watch, monotonic=mono, refresh_s=10.0, proc_root=None)
    first = {(s.metric, s.tags["process"]): s.value for s in c.collect(1.0)}
    assert first == {("proc.rss.bytes", "web"): 7000.0, ("proc.rss.bytes", "db"): 10.0,
                     ("proc.rss.bytes", "train"): 77.0}  # fmt: skip
    stats[100], stats[102], stats[200] = (1.5, 0.25, 1000), (0.25, 0.0, 4000), (5.0, 6.0, 10)
    mono.t += 1.0
    second = {(s.metric, s.tags["process"]): s.value for s in c.collect(2.0)}
    assert second[("proc.cpu.percent", "web")] == pytest.approx(100.0)  # 0.75 + 0.25 s in 1 s
    assert second[("proc.cpu.percent", "db")] == pytest.approx(100.0)
    assert second[("proc.cpu.percent", "train")] == 0.0
    assert ps.scans == 1  # the table was read once; the next rounds used cached processes
    # a new child appears: seen only at the next refresh
    table[103], stats[103] = (100, "nginx", 5.0), (0.0, 0.0, 500)
    mono.t += 1.0
    assert (
        dict(((s.metric, s.tags["process"]), s.value) for s in c.collect(3.0))[
            ("proc.rss.bytes", "web")
        ]
        == 7000.0
    )
    mono.t += 10.0
    got = {(s.metric, s.tags["process"]): s.value for s in c.collect(13.0)}
    assert got[("proc.rss.bytes", "web")] == 7500.0 and ps.scans == 2
    # a process that died is dropped, the others still report
    ps.dead.add(101)
    mono.t += 1.0
    got = {(s.metric, s.tags["process"]): s.value for s in c.collect(14.0)}
    assert got[("proc.rss.bytes", "web")] == 5500.0


def test_own_process_is_never_matched_and_missing_group_reports_nothing():
    me = os.getpid()
    ps = FakePsutil({me: (1, "python3", 1.0)}, {me: (1.0, 1.0, 5)})
    c = ProcessCollector(ps, parse_watch("py=python*,gone=pid:999999"), proc_root=None)
    assert c.collect(1.0) == []


@pytest.fixture
def trees():
    """Three real shell trees: sh -> (sleep, sleep)."""
    procs = [
        subprocess.Popen(["sh", "-c", "sleep 30 & sleep 30 & wait"], start_new_session=True)
        for _ in range(3)
    ]
    time.sleep(0.3)
    yield procs
    for p in procs:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_real_process_trees_through_proc(trees):
    watch = parse_watch(",".join(f"t{i}=pid:{p.pid}" for i, p in enumerate(trees)))
    c = ProcessCollector(psutil, watch)
    c.collect()
    time.sleep(0.05)
    got = {(s.metric, s.tags["process"]): s.value for s in c.collect()}
    for i, p in enumerate(trees):
        expected = psutil.Process(p.pid).memory_info().rss + sum(
            ch.memory_info().rss for ch in psutil.Process(p.pid).children(recursive=True)
        )
        assert got[("proc.rss.bytes", f"t{i}")] == pytest.approx(expected, rel=0.05)
        assert ("proc.cpu.percent", f"t{i}") in got
    table = scan_proc(__import__("pathlib").Path("/proc"))
    assert table[trees[0].pid][1] == "sh" and table[os.getpid()][0] == os.getppid()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_new_children_are_found_by_the_spread_out_scan():
    tree = subprocess.Popen(["sh", "-c", "sleep 0.4; sleep 30 & wait"], start_new_session=True)
    try:
        time.sleep(0.1)
        c = ProcessCollector(psutil, parse_watch(f"t=pid:{tree.pid}"), refresh_s=0.3)
        c.collect()
        first = {pid for pid, _ in c._groups["t"]}
        assert tree.pid in first and len(first) == 2  # sh and `sleep 0.4`
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            time.sleep(0.05)
            c.collect()
            now = {pid for pid, _ in c._groups["t"]}
            if now - first:
                break
        kids = {p.pid for p in psutil.Process(tree.pid).children()}
        assert now == {tree.pid} | kids and len(now) == 2  # `sleep 0.4` gone, `sleep 30` in
        assert len(c._fds) == 2
        c.close()
        assert c._fds == {}
    finally:
        os.killpg(tree.pid, signal.SIGKILL)
        tree.wait()


class NoPsutil:
    """Fails every use: with a procfs root, the collector must read only files under it."""

    def __getattr__(self, name):
        raise AssertionError(f"psutil.{name} used although a procfs root was given")


def test_a_containers_procfs_root_is_read_directly_not_through_psutil(tmp_path):
    """FLEETPULSE_PROCFS: stat, statm and cmdline of the host's processes under proc_root."""

    def proc(pid, ppid, name, argv, utime, rss_pages):
        d = tmp_path / str(pid)
        d.mkdir()
        fields = ["S", str(ppid)] + ["0"] * 9 + [str(utime), "0"] + ["0"] * 6 + ["777", "0"]
        (d / "stat").write_text(f"{pid} ({name}) {' '.join(fields)} {rss_pages}\n")
        (d / "statm").write_text(f"100 {rss_pages} 0 0 0 0 0\n")
        (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")

    proc(4242, 1, "python3", ["python3", "train.py", "--fast"], 100, 10)
    proc(4243, 4242, "worker", ["worker"], 50, 5)
    proc(4300, 1, "python3", ["python3", "serve.py"], 10, 99)
    c = ProcessCollector(NoPsutil(), parse_watch("train=cmd:*train.py*"), proc_root=tmp_path)
    got = {(s.metric, s.tags["process"]): s.value for s in c.collect(1.0)}
    page = os.sysconf("SC_PAGE_SIZE")
    assert got == {("proc.rss.bytes", "train"): float(15 * page)}
    c.close()
