"""The per-round journal (contract section 7): every round is on disk before the next is taken.

Each round's accepted points go to the spool's `journal` table, one row per window; the
transaction that spools a window's batch deletes its rows, so a sample is always in exactly
one place, the journal or a batch. A restarted agent files the journal back into its batcher
and sends those windows with the carry of the batch before them (contract section 3).

When the disk refuses (full, or the file damaged under a running agent) the rounds are held
in memory, said once in the log, and written with the next round that succeeds; the spool
first drops its oldest batches to make room (counted in `agent.spool.dropped`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from typing import TYPE_CHECKING

from agent.batcher import Batcher, Row

if TYPE_CHECKING:  # the spool is only called, never built, here
    from agent.spool import Spool

log = logging.getLogger(__name__)

SAY_AGAIN_S = 600.0  # a journal that keeps failing is said again at most this often


def encode_rows(rows: list[Row]) -> str:
    """One window's points of a round as compact JSON: [[key, unit, ts, value], ...]."""
    return json.dumps(rows, separators=(",", ":"), allow_nan=False)


def decode_rows(text: str) -> list[Row]:
    """Inverse of encode_rows; raises ValueError for anything that is not such a list."""
    out: list[Row] = []
    for item in json.loads(text):
        key, unit, ts, value = item
        if not (isinstance(key, str) and isinstance(unit, str)):
            raise ValueError(f"not a journal row: {item!r}")
        out.append((key, unit, float(ts), float(value)))
    return out


class Journal:
    """Writes each round to the spool; holds the rounds the disk refused until it takes them."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.held: dict[float, list[Row]] = {}  # window -> points not on disk yet
        self.failing = False
        self._said: float | None = None  # when the last "not written" line was logged
        self._told = False  # that line was logged in this failure streak

    def write(self, rows: dict[float, list[Row]]) -> bool:
        """Commit this round (and any held ones); False when they stay held in memory."""
        for window, points in rows.items():
            self.held.setdefault(window, []).extend(points)
        if not self.held:
            return True
        try:
            self.spool.journal({w: encode_rows(p) for w, p in self.held.items()})
        except sqlite3.Error as exc:
            now = time.monotonic()
            if not self.failing and (self._said is None or now - self._said > SAY_AGAIN_S):
                self._said, self._told = now, True  # a disk on the edge flaps: say it rarely
                log.error(
                    "journal not written (%s): sampling goes on, the rounds are held in memory "
                    "until the disk takes them; a kill meanwhile loses them", exc,
                )  # fmt: skip
            self.failing = True
            return False
        if self._told:
            n = sum(len(p) for p in self.held.values())
            log.warning("journal written again: %d held point(s) are on disk now", n)
            self._told = False
        self.failing = False
        self.held.clear()
        return True

    def spooled(self, window: float) -> None:
        """The window's batch is in the spool: its held points went with it."""
        self.held.pop(window, None)

    def restore(self, batcher: Batcher) -> int:
        """File the journal back into a fresh batcher (a restart); returns the points restored.

        The journal is rewritten under the windows the batcher uses now, so a changed window
        length never leaves rows that no batch deletes. A damaged row is logged and skipped.
        """
        rows: list[Row] = []
        try:
            stored = self.spool.journal_rows()
        except sqlite3.Error as exc:
            log.error("journal not readable (%s): the window open at the last stop is lost", exc)
            return 0
        for window, text in stored:
            try:
                rows.extend(decode_rows(text))
            except (ValueError, TypeError) as exc:
                log.error("journal: a damaged row of window %s skipped (%s)", window, exc)
        filed = batcher.restore(rows)
        try:
            self.spool.rewrite_journal({w: encode_rows(p) for w, p in filed.items()})
        except sqlite3.Error as exc:  # the rows stay as they were: still one place per sample
            log.error("journal: could not re-file the restored rows (%s)", exc)
        n = sum(len(p) for p in filed.values())
        if n:
            log.info(
                "journal: %d point(s) of %d window(s) taken before the restart are back in "
                "their windows", n, len(filed),
            )  # fmt: skip
        return n
