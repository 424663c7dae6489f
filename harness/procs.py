"""The gunicorn master's processes under load: their summed RSS over time and the workers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time

import psutil


class RssSampler:
    """Sums the RSS of the gunicorn master and its workers every few seconds, in a thread."""

    def __init__(self, master_pid: int, every: float = 2.0) -> None:
        self.master = psutil.Process(master_pid)
        self.every = every
        self.samples: list[tuple[float, float, int]] = []  # (t, MiB, processes)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def _one(self) -> None:
        total, n = 0, 0
        with contextlib.suppress(psutil.Error):
            for p in [self.master, *self.master.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
                    n += 1
        self.samples.append((time.time(), total / 2**20, n))

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self._one()

    def __enter__(self) -> RssSampler:
        self._one()
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join(5)
        self._one()

    def summary(self, warmup: float) -> dict:
        """First, after warm-up, peak and last sums; growth after warm-up over 10% is flagged."""
        t0 = self.samples[0][0]
        after = [s for s in self.samples if s[0] - t0 >= warmup] or self.samples[-1:]
        warm, last = after[0][1], self.samples[-1][1]
        growth = (last - warm) / warm if warm else 0.0
        return {
            "rss_first_mib": self.samples[0][1],
            "rss_warm_mib": warm,
            "rss_peak_mib": max(s[1] for s in after),
            "rss_last_mib": last,
            "rss_growth": growth,
            "rss_growth_flag": growth > 0.10,
            "rss_series": [(round(t - t0, 1), round(m, 1), n) for t, m, n in self.samples],
        }


def worker_pids(master_pid: int) -> list[int]:
    """The gunicorn workers now running under the master."""
    with contextlib.suppress(psutil.Error):
        return sorted(p.pid for p in psutil.Process(master_pid).children())
    return []


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 15.0) -> None:
    """``sig`` to the process's group (started with ``start_new_session``), then SIGKILL of
    what is left after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, sig)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
