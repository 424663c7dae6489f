from types import SimpleNamespace

from agent.collectors.network import NetworkCollector


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def nic(b_in, b_out, p_in, p_out, e_in, e_out):
    return SimpleNamespace(
        bytes_recv=b_in, bytes_sent=b_out, packets_recv=p_in, packets_sent=p_out,
        errin=e_in, errout=e_out,
    )  # fmt: skip


def test_network_rates_skip_loopback_and_counter_reset():
    rounds = [
        {"lo": nic(0, 0, 0, 0, 0, 0), "eth0": nic(1000, 2000, 10, 20, 0, 0)},
        {"lo": nic(9, 9, 9, 9, 0, 0), "eth0": nic(1500, 3000, 15, 40, 1, 2)},
        {"eth0": nic(10, 10, 1, 1, 0, 0)},  # counters reset (driver reload): no rate
    ]
    ps = SimpleNamespace(net_io_counters=lambda pernic=False: rounds.pop(0))
    mono = Clock()
    c = NetworkCollector(ps, monotonic=mono)
    assert c.collect(1.0) == []
    mono.t += 0.5
    got = {s.metric: s.value for s in c.collect(2.0)}
    assert got == {
        "net.recv.bytes_per_s": 1000.0,
        "net.sent.bytes_per_s": 2000.0,
        "net.recv.packets_per_s": 10.0,
        "net.sent.packets_per_s": 40.0,
        "net.errors.in_per_s": 2.0,
        "net.errors.out_per_s": 4.0,
    }
    mono.t += 1
    assert c.collect(3.0) == []
