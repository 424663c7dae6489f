"""The sending pipeline, built and torn down in this one place for the agent and the probe.

Spool lock -> spool -> delivery (its own thread) -> batcher -> runner (and its journal,
filed back into the batcher: the windows a killed agent held). Teardown is the same
for both: the runner has put every held window in the spool, the sender stops, what can be
sent before the deadline is sent, collectors, connection and spool are closed, the lock let go.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from agent.batcher import Batcher
from agent.collectors.base import Collector
from agent.config import Config
from agent.runner import Runner
from agent.sender import Delivery, HttpClient
from agent.spool import Spool, SpoolLock

log = logging.getLogger(__name__)


class Pipeline:
    """One agent's (or one probe's) spool, sender and sampling loop over its collectors."""

    def __init__(
        self,
        cfg: Config,
        collectors: Callable[[], Sequence[Collector]],
        *,
        spool_dir: Path | None = None,
        spool_tags: dict[str, str] | None = None,
        sender_name: str = "sender",
    ) -> None:
        """Take the spool first (raises SpoolBusy), then build the collectors (NVML init...)."""
        directory = cfg.spool_dir if spool_dir is None else Path(spool_dir)
        self.lock = SpoolLock(directory)
        try:
            self.spool = Spool(
                directory, cfg.spool_max_batches, int(cfg.spool_max_mb * 1024 * 1024)
            )
        except BaseException:
            self.lock.release()
            raise
        self.delivery = Delivery(
            self.spool, HttpClient(cfg.url, cfg.token, cfg.timeout, cfg.ca_file)
        )
        self.runner = Runner(
            [],
            Batcher(cfg.host, cfg.window, self.spool.carry()),
            self.spool,
            self.delivery,
            cfg.interval,
            spool_tags=spool_tags,
        )
        self.restored = self.runner.journal.restore(self.runner.batcher)  # type: ignore[union-attr]
        self._send_stop = threading.Event()
        self._sender = threading.Thread(
            target=self.delivery.run, args=(self._send_stop,), name=sender_name, daemon=True
        )
        self._guard = threading.Lock()
        self._running = self._released = self._closing = False
        try:
            self.runner.collectors = list(collectors())
        except BaseException:
            self._release()
            raise

    @property
    def collectors(self) -> list[Collector]:
        """The collectors the loop asks every round."""
        return self.runner.collectors

    def run(self, stop: threading.Event) -> None:
        """Send on a thread and sample here until stop is set; held windows end in the spool."""
        with self._guard:
            if self._closing:
                return
            self._running = True
        try:
            self._sender.start()
            self.runner.run(stop)
        finally:
            with self._guard:
                self._running = False
                late = self._closing
            if late:  # close() came while the loop was still writing: it is done now
                self._release()

    def close(self, join_until: float, drain_s: float | None = None) -> int:
        """Stop the sender, send until the deadline, release everything; returns batches left.

        The sender may be mid-request: it is given until join_until. Then what is spooled is
        sent for drain_s more seconds (default: until join_until), stopping at a failure.
        """
        self._send_stop.set()
        self.delivery.wake.set()
        if self._sender.is_alive():
            self._sender.join(max(0.0, join_until - time.monotonic()))
        if not self._sender.is_alive():
            end = join_until if drain_s is None else time.monotonic() + drain_s
            try:
                self.delivery.drain(end)
            except Exception:
                log.exception("final send failed; batches stay in the spool")
        self.delivery.client.close()
        left = self.spool.pending() if not self._released else 0
        with self._guard:
            self._closing = True
            running = self._running
        if not running:
            self._release()
        return left

    def _release(self) -> None:
        """Close collectors and spool, then drop the lock; once, whoever gets here last."""
        with self._guard:
            if self._released:
                return
            self._released = True
        for c in self.runner.collectors:
            try:
                c.close()
            except Exception:
                log.exception("collector %s: error while closing", c.name)
        self.spool.close()
        self.lock.release()
