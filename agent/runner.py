"""The sampling loop: drift-free rounds, one batch per closed window into the spool."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from agent.batcher import Batcher
from agent.collectors.base import Metric
from agent.samples import Sample

if TYPE_CHECKING:  # the sender pulls in http.client, which __main__ imports late on purpose
    from agent.collectors import Collector
    from agent.sender import Delivery
    from agent.spool import Spool

log = logging.getLogger(__name__)

CLOSE_DELAY = 0.2  # seconds after a window's end before its batch is cut
# the loop's own gauges, sent whenever it has a spool (a probe's carry its `service` tag)
SPOOL_PENDING = Metric("agent.spool.pending", "count")
SPOOL_DROPPED = Metric("agent.spool.dropped", "count")


class Runner:
    """Samples every `interval` seconds on a fixed grid (k * interval from start, no drift)."""

    def __init__(
        self,
        collectors: Sequence[Collector],
        batcher: Batcher,
        spool: Spool | None,
        delivery: Delivery | None,
        interval: float = 1.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        spool_tags: dict[str, str] | None = None,
    ) -> None:
        self.collectors = list(collectors)
        self.batcher = batcher
        self.spool = spool
        self.delivery = delivery
        self.interval = interval
        self._clock = clock
        self._mono = monotonic
        self._failing: set[str] = set()
        # a probe's own spool gauges carry its service tag, so they never collide with the agent's
        self._spool_tags = dict(spool_tags or {})

    def round(self, now: float | None = None) -> list[Sample]:
        """Ask every collector once; one failing collector never stops the others."""
        ts = self._clock() if now is None else now
        out: list[Sample] = []
        for c in self.collectors:
            try:
                out.extend(c.collect(ts))
                self._failing.discard(c.name)
            except Exception:
                if c.name not in self._failing:  # one log line per failure streak
                    log.exception("collector %s failed; skipping it this round", c.name)
                    self._failing.add(c.name)
        if self.spool is not None:
            tags, spool = self._spool_tags, self.spool
            out.append(SPOOL_PENDING.sample(tags, ts, float(spool.pending())))
            out.append(SPOOL_DROPPED.sample(tags, ts, float(spool.dropped())))
        return out

    def cut(self, now: float, everything: bool = False) -> int:
        """Move closed windows (or, at shutdown, every window) into the spool."""
        windows = self.batcher.open_windows() if everything else self.batcher.closed(now)
        n = 0
        for w in windows:
            built = self.batcher.take(w)
            if built is None or self.spool is None:
                continue
            body, carry, _count = built
            self.spool.put(w, body, carry)
            n += 1
        if n and self.delivery is not None:
            self.delivery.wake.set()
        return n

    def run(self, stop: threading.Event) -> None:
        """Sample until stop is set, then flush every open window to the spool."""
        start = self._mono()
        k = 0
        while not stop.is_set():
            samples = self.round()
            self.batcher.add(samples)
            now = self._clock()
            self.cut(now - CLOSE_DELAY)
            k = max(k + 1, math.floor((self._mono() - start) / self.interval) + 1)  # skip missed
            next_round = start + k * self.interval
            # also wake just after the current window closes, for intervals longer than it
            w_end = self.batcher.window_of(now) + self.batcher.window + CLOSE_DELAY
            while not stop.is_set():
                mono = self._mono()
                wait = min(next_round - mono, w_end - self._clock())
                if wait > 0:
                    stop.wait(wait)
                if self._clock() >= w_end:
                    self.cut(self._clock() - CLOSE_DELAY)
                    w_end += self.batcher.window
                if self._mono() >= next_round:
                    break
        self.cut(self._clock(), everything=True)
