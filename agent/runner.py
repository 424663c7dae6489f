"""The sampling loop: drift-free rounds, one batch per closed window into the spool."""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from agent.batcher import Batcher, Point
from agent.collectors.base import Metric
from agent.journal import Journal
from agent.samples import Sample

if TYPE_CHECKING:  # the sender pulls in http.client, which __main__ imports late on purpose
    from agent.collectors import Collector
    from agent.sender import Delivery
    from agent.spool import Spool

log = logging.getLogger(__name__)

CLOSE_DELAY = 0.2  # seconds after a window's end before its batch is cut
MAX_HELD_BATCHES = 240  # batches held in memory while the disk refuses them (2 h of windows)
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
        self.journal = Journal(spool) if spool is not None else None
        # batches cut while the disk refused them, oldest first: (window, body, carries)
        self._held: list[tuple[float, bytes, dict[str, Point]]] = []
        self.lost = 0  # batches dropped from memory because the disk refused them too long
        self._put_failing = False
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
            out.append(SPOOL_DROPPED.sample(tags, ts, float(spool.dropped() + self.lost)))
        return out

    def take_round(self) -> list[Sample]:
        """One round into the batcher and onto disk (the journal) before the next is taken."""
        samples = self.round()
        rows = self.batcher.add(samples)
        if self.journal is not None:
            self.journal.write(rows)
        return samples

    def cut(self, now: float, everything: bool = False) -> int:
        """Move closed windows (or, at shutdown, every window) into the spool."""
        windows = self.batcher.open_windows() if everything else self.batcher.closed(now)
        for w in windows:
            built = self.batcher.take(w)
            if built is not None and self.spool is not None:
                self._held.append((w, built[0], built[1]))
        n = self._spool_held()
        if n and self.delivery is not None:
            self.delivery.wake.set()
        return n

    def _spool_held(self) -> int:
        """Put the cut batches in the spool, oldest first; what the disk refuses waits (bounded)."""
        n = 0
        while self._held and self.spool is not None:
            w, body, carry = self._held[0]
            try:
                self.spool.put(w, body, carry)
            except sqlite3.Error as exc:
                if not self._put_failing:  # once per streak: a full disk stays full a while
                    log.error("batch of window %s not spooled (%s); kept in memory", w, exc)
                self._put_failing = True
                break
            if self._put_failing:
                log.warning("the spool takes batches again (%d waited)", len(self._held))
            self._put_failing = False
            self._held.pop(0)
            if self.journal is not None:
                self.journal.spooled(w)
            n += 1
        if len(self._held) > MAX_HELD_BATCHES:
            gone = len(self._held) - MAX_HELD_BATCHES
            del self._held[:gone]
            self.lost += gone
            log.error("the disk refused batches too long: dropped the %d oldest from memory", gone)
        return n

    def run(self, stop: threading.Event) -> None:
        """Sample until stop is set, then flush every open window to the spool."""
        start = self._mono()
        k = 0
        while not stop.is_set():
            self.take_round()
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
