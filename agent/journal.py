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


Keys = dict[int, tuple[str, str]]  # series number -> (series key, unit)


def encode_rows(rows: list[Row], ids: dict[str, int]) -> str:
    """One window's points as compact JSON, series by number, grouped by timestamp:
    [[ts, [id, value, id, value, ...]], ...] (~10 bytes a point: fewer pages per commit)."""
    groups: dict[float, list[float]] = {}
    for key, _unit, ts, value in rows:
        groups.setdefault(ts, []).extend((ids[key], value))
    return json.dumps(list(groups.items()), separators=(",", ":"), allow_nan=False)


def decode_rows(text: str, keys: Keys) -> list[Row]:
    """Inverse of encode_rows; raises ValueError (or KeyError) for anything else."""
    out: list[Row] = []
    for ts, pairs in json.loads(text):
        for i in range(0, len(pairs) - 1, 2):
            key, unit = keys[int(pairs[i])]
            out.append((key, unit, float(ts), float(pairs[i + 1])))
    return out


class Journal:
    """Writes each round to the spool; holds the rounds the disk refused until it takes them."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.held: dict[float, list[Row]] = {}  # window -> points not on disk yet
        self._ids: dict[str, int] = {}  # series key -> its number in the journal_keys table
        self.failing = False
        self._said: float | None = None  # when the last "not written" line was logged
        self._told = False  # that line was logged in this failure streak

    def write(self, rows: dict[float, list[Row]]) -> bool:
        """Commit this round (and any held ones); False when they stay held in memory."""
        for window, points in rows.items():
            self.held.setdefault(window, []).extend(points)
        if not self.held:
            return True
        ids, new = self._numbered(self.held)
        try:
            self.spool.journal({w: encode_rows(p, ids) for w, p in self.held.items()}, new)
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
        self._ids = ids
        return True

    def _numbered(self, rows: dict[float, list[Row]]) -> tuple[dict[str, int], list]:
        """Numbers for every series in rows: the known ones, and new (id, key, unit) to store."""
        ids, new = self._ids, []
        for points in rows.values():
            for key, unit, _ts, _value in points:
                if key not in ids:
                    if not new:
                        ids = dict(ids)  # kept only once the write succeeded
                    ids[key] = max(ids.values(), default=0) + 1
                    new.append((ids[key], key, unit))
        return ids, new

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
            stored, keys = self.spool.journal_rows(), self.spool.journal_keys()
        except sqlite3.Error as exc:
            log.error("journal not readable (%s): the window open at the last stop is lost", exc)
            return 0
        for window, text in stored:
            try:
                rows.extend(decode_rows(text, keys))
            except (ValueError, TypeError, KeyError) as exc:
                log.error("journal: a damaged row of window %s skipped (%r)", window, exc)
        filed = batcher.restore(rows)
        ids, new = self._numbered(filed)
        try:
            self.spool.rewrite_journal({w: encode_rows(p, ids) for w, p in filed.items()}, new)
            self._ids = ids
        except sqlite3.Error as exc:
            # the rows stay as they were (still one place per sample), with their numbers
            self._ids = {key: i for i, (key, _unit) in keys.items()}
            log.error("journal: could not re-file the restored rows (%s)", exc)
        n = sum(len(p) for p in filed.values())
        if n:
            log.info(
                "journal: %d point(s) of %d window(s) taken before the restart are back in "
                "their windows", n, len(filed),
            )  # fmt: skip
        return n
