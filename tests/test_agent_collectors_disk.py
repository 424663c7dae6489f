from types import SimpleNamespace

import pytest

from agent.collectors.disk import DiskCollector


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def part(device, mountpoint, fstype):
    return SimpleNamespace(device=device, mountpoint=mountpoint, fstype=fstype, opts="rw")


def io(rb, wb, rc, wc):
    return SimpleNamespace(read_bytes=rb, write_bytes=wb, read_count=rc, write_count=wc)


def test_disk_skips_pseudo_fs_and_bind_duplicates_and_computes_rates():
    counters = [
        {"vda": io(0, 0, 0, 0), "loop0": io(0, 0, 0, 0)},
        {"vda": io(2048, 4096, 10, 20), "loop0": io(99, 99, 99, 99)},
    ]
    listed = []

    class Ps:
        def disk_partitions(self, all=False):
            listed.append(all)
            return [
                part("proc", "/proc", "proc"),
                part("tmpfs", "/dev/shm", "tmpfs"),
                part("cgroup", "/sys/fs/cgroup/cpu", "cgroup"),
                part("/dev/vda", "/", "ext4"),
                part("/dev/vda", "/etc/hosts", "ext4"),  # bind mount of the same device
                part("/dev/sdb1", "/data", "xfs"),
                part("overlay", "/var/lib/docker/overlay2/x/merged", "overlay"),
            ]

        def disk_usage(self, path):
            return SimpleNamespace(used=75, free=25, percent=75.0)

        def disk_io_counters(self, perdisk=False):
            return counters.pop(0)

    mono = Clock()
    c = DiskCollector(Ps(), monotonic=mono)
    first = c.collect(1.0)
    assert {s.tags["mount"] for s in first} == {"/", "/data"}
    assert not [s for s in first if "device" in s.tags]  # no rate in the first round
    mono.t += 2.0
    second = {(s.metric, tuple(s.tags.items())): s.value for s in c.collect(3.0)}
    assert second[("disk.read.bytes_per_s", (("device", "vda"),))] == pytest.approx(1024)
    assert second[("disk.write.bytes_per_s", (("device", "vda"),))] == pytest.approx(2048)
    assert second[("disk.read.iops", (("device", "vda"),))] == pytest.approx(5)
    assert second[("disk.write.iops", (("device", "vda"),))] == pytest.approx(10)
    assert not any(k[1] == (("device", "loop0"),) for k in second)
    assert second[("disk.percent", (("mount", "/"),))] == 75.0
    assert listed == [True]  # the mount list is cached between rounds


def test_disk_in_a_container_reads_the_hosts_mounts_through_rootfs(tmp_path):
    """FLEETPULSE_PROCFS/ROOTFS: the host's mount table (PID 1's), usage via the rootfs mount."""
    (tmp_path / "proc" / "1").mkdir(parents=True)
    (tmp_path / "proc" / "1" / "mounts").write_text(
        "/dev/vda1 / ext4 rw 0 0\nproc /proc proc rw 0 0\n/dev/sdb1 /srv/my\\040data xfs rw 0 0\n"
    )
    asked = []

    class Ps:
        def disk_partitions(self, all=False):
            raise AssertionError("the container's own mounts must not be used")

        def disk_usage(self, path):
            asked.append(path)
            return SimpleNamespace(used=1, free=3, percent=25.0)

        def disk_io_counters(self, perdisk=False):
            return {}

    c = DiskCollector(
        Ps(), mounts_file=tmp_path / "proc" / "1" / "mounts", rootfs=tmp_path / "rootfs"
    )
    out = c.collect(1.0)
    assert {s.tags["mount"] for s in out} == {"/", "/srv/my data"}
    assert sorted(asked) == [str(tmp_path / "rootfs"), str(tmp_path / "rootfs" / "srv/my data")]


def test_container_paths_come_from_the_config(tmp_path):
    import psutil

    from agent import config
    from agent.collectors import default_os_layer

    cfg = config.load(
        environ={
            "FLEETPULSE_PROCFS": str(tmp_path),
            "FLEETPULSE_SYSFS": "/host/sys",
            "FLEETPULSE_ROOTFS": "/rootfs",
            "FLEETPULSE_SPOOL_DIR": str(tmp_path / "spool"),
        }
    )
    before = psutil.PROCFS_PATH
    try:
        layer = default_os_layer(cfg)
        # the procfs path travels in the OS layer; psutil's process-wide setting is left alone
        assert psutil.PROCFS_PATH == before == "/proc"
        assert (str(layer.proc_root), str(layer.sysfs_root), str(layer.rootfs)) == (
            str(tmp_path),
            "/host/sys",
            "/rootfs",
        )
    finally:
        psutil.PROCFS_PATH = before
