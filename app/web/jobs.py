"""The 30-minute downsampling and retention job, run inside the server (no second scheduler).

Every worker runs a daemon thread that wakes at each clock-aligned slot; a lease row in the
metadata store lets exactly one worker run each slot.
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time

from flask import Flask

log = logging.getLogger("fleetpulse.jobs")

JOB = "downsample"


class Background:
    """A worker's daemon thread running ``loop(stop)``; started after gunicorn forks."""

    def __init__(self, name: str, loop) -> None:
        self.name, self.loop = name, loop
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.loop, args=(self._stop,), name=self.name, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()


class JobRunner(Background):
    """Runs ``store.run_jobs`` once per slot across every worker of the deployment."""

    def __init__(self, store, meta, interval: float) -> None:
        super().__init__("fleetpulse-jobs", self._loop)
        self.store = store
        self.meta = meta
        self.interval = interval

    def run_slot(self, now: float | None = None) -> dict[str, int] | None:
        """Run the job for the slot holding ``now`` unless another worker already took it."""
        now = time.time() if now is None else now
        slot = math.floor(now / self.interval)
        if not self.meta.claim(JOB, slot, f"{os.getpid()}"):
            return None
        t0 = time.perf_counter()
        counts = self.store.run_jobs(now)
        log.info("job %s slot=%d %s in %.3fs", JOB, slot, counts, time.perf_counter() - t0)
        return counts

    def _loop(self, stop: threading.Event) -> None:
        # Catch up at start (a restarted server refreshes at once), then at each slot boundary.
        while not stop.is_set():
            try:
                self.run_slot()
            except Exception:  # a failed run must not kill the thread; the next slot retries
                log.exception("job %s failed", JOB)
            now = time.time()
            wait = (math.floor(now / self.interval) + 1) * self.interval - now
            stop.wait(wait + random.uniform(0.5, 3.0))


def init_app(app: Flask) -> None:
    ext = app.extensions["fleetpulse"]
    ext.jobs = JobRunner(ext.store, ext.meta, ext.settings.job_interval)
