"""The one write protocol; each backend implements only its primitives.

A write, whatever the store: under the store's per-host write section, the series ids (created on
first sight), the stored states of the windows the batch touches, the engine's merge and
finish, the windows with covered time saved, optional raw samples, and each series' newest
sample. The engine runs here, not at validation, so every wire format reaches the same path.
"""

from __future__ import annotations

import abc
import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.core import codec, engine, resolution, state, tails
from app.core.records import (
    Batch,
    HostSummary,
    Query,
    RateFeed,
    SeriesPoints,
    SeriesState,
    Windows,
)
from app.storage import refresh, rollup
from app.storage.late import LATE_AFTER, late_labels, spans
from app.storage.registry import Found, Fresh, Registry

H = engine.WINDOW_30M
Stored = dict[tuple[int, int], state.State]  # (series index in the batch, label) -> state


@dataclass(frozen=True)
class Rows:
    """The windows one write saves: rows of ``merged`` with covered time, finished, encoded."""

    merged: engine.Summaries
    windows: Windows
    states: codec.EncodedStates
    keep: np.ndarray  # indices into merged/windows/states


class Store(abc.ABC):
    """What the API needs from a database; ``write`` is the same for every backend."""

    registry: Registry
    hold: float
    keep_raw: bool
    retention: dict[str, float]
    late_after: float = LATE_AFTER

    def write(self, batch: Batch, counters: RateFeed | None = None) -> int:
        """Merge the batch's windows with stored state, atomically per host; windows written.

        ``counters``: raw counter samples whose rates join the batch, computed under the host's
        write section from each counter's kept previous raw sample (contract section 8)."""
        summaries = None if batch.server_carry or counters else self._summarize(batch)
        written, fresh = 0, {}
        with self.write_section(batch.host) as tx:
            if counters is not None:
                with self.registry_tx(tx) as con:
                    last = self.registry.counters(con, batch.host, counters.keys)
                batch, last = counters.apply(batch, last)
            if batch.samples:
                written, fresh = self._write_in(tx, batch, summaries)
            if counters is not None:
                with self.registry_tx(tx) as con:  # after the windows: a failed write keeps none
                    self.registry.keep_counters(con, batch.host, counters.keys, last)
        self.registry.keep(fresh)  # only ids whose transaction committed
        return written

    def _write_in(
        self, tx: Any, batch: Batch, summaries: engine.Summaries | None
    ) -> tuple[int, Fresh]:
        """The write inside the host's write section; the ids to cache once it commits."""
        with self.registry_tx(tx) as con:  # newest stored samples, under the host's lock
            ids, fresh = self.registry.ids(con, batch.host, batch.keys, batch.units)
            latest = self.registry.latest(con, ids)
        if summaries is None:
            batch = with_server_carry(batch, ids, latest)
            summaries = self._summarize(batch)
        summaries, stored = self._with_stored(tx, batch, ids, summaries, latest)
        rows = self._merge(summaries, stored, batch)
        self.write_windows(tx, batch, ids, rows)
        if self.keep_raw:
            self.write_raw(tx, batch, ids)
        last = batch.last_index()
        written = rows.merged.sid[rows.keep], rows.windows.time[rows.keep]
        late = late_labels(ids, *written, time.time(), self.late_after)
        with self.registry_tx(tx) as con:
            self.registry.update_latest(con, ids, batch.ts[last].tolist(), batch.val[last].tolist())
            if late:
                self.registry.late.mark(con, late)
        return len(rows.keep), fresh

    def _summarize(self, batch: Batch) -> engine.Summaries:
        return engine.summarize(
            batch.sid, batch.ts, batch.val, batch.carry_ts, batch.carry_val, self.hold
        )

    def _with_stored(
        self,
        tx: Any,
        batch: Batch,
        ids: list[int],
        s: engine.Summaries,
        latest: dict[int, tuple[float, float]],
    ) -> tuple[engine.Summaries, Stored]:
        """The rows to merge, with what is stored: out-of-order batches hold on (``tails``)."""
        last = batch.last_index()
        latest_ts = np.array([latest.get(i, (math.nan,))[0] for i in ids], dtype=np.float64)
        t = tails.tails(batch.ts[last], batch.val[last], latest_ts, self.hold)
        if len(t) == 0:
            return s, self.read_states(tx, batch, ids, s)
        both, is_tail = engine.concat_sorted(s, t)
        stored = self.read_states(tx, batch, ids, both)
        return both.take(tails.trim(both, is_tail, batch.ts[last], stored)), stored

    def _merge(self, s: engine.Summaries, stored: Stored, batch: Batch) -> Rows:
        points = state.Points(batch.sid, batch.ts, batch.val)
        merged, encoded = codec.merge_encoded(s, stored, points, self.hold)
        w = engine.finalize(merged, self.hold)
        return Rows(merged, w, encoded, np.flatnonzero(w.covered > 0))

    # ---- primitives ------------------------------------------------------------------------

    @abc.abstractmethod
    def write_section(self, host: str) -> contextlib.AbstractContextManager[Any]:
        """Serialise writes of one host across workers; yields what the primitives share."""

    @abc.abstractmethod
    def registry_tx(self, tx: Any) -> contextlib.AbstractContextManager[Any]:
        """A transaction on the registry's database, inside the write section."""

    @abc.abstractmethod
    def read_states(self, tx: Any, batch: Batch, ids: list[int], s: engine.Summaries) -> Stored:
        """The stored states of the windows ``s`` touches (only those that may exist)."""

    @abc.abstractmethod
    def write_windows(self, tx: Any, batch: Batch, ids: list[int], rows: Rows) -> None:
        """Save ``rows.keep`` of the finished windows with their states."""

    @abc.abstractmethod
    def write_raw(self, tx: Any, batch: Batch, ids: list[int]) -> None:
        """Save the raw samples (only called when raw retention is on)."""

    @abc.abstractmethod
    def read_series(
        self, host: str, found: list[Found], start: float, end: float, res: str
    ) -> list[Windows]:
        """The stored windows of each found series labelled in (start, end], at ``res``."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise StorageUnavailable unless the database answers now."""

    @abc.abstractmethod
    def rollup(self, after: int, upto: int, host: str | None) -> int:
        """Store the 30-minute windows of the 30-second windows labelled in (after, upto], of
        one host or of all; return the windows written."""

    @abc.abstractmethod
    def expire(self, now: float) -> int:
        """Drop what retention no longer keeps, where the database does not do it itself."""

    def run_jobs(self, now: float) -> dict[str, int]:
        """The server's 30-minute job (``refresh``); return counts for the log."""
        return refresh.run(self, now)

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections."""

    # ---- reads: the same for every store ----------------------------------------------------

    def query(self, q: Query) -> list[SeriesPoints]:
        """Series of ``q.host`` matching the query, with windows labelled in (start, end]."""
        found = self.registry.find(q.host, q.metric, q.tags, q.unit)
        if not found:
            return []
        step = resolution.seconds(q.resolution)
        if step is None:
            raise ValueError(f"not a resolution: {q.resolution!r}")
        if step in resolution.NATIVE:
            windows = self._stored(q.host, found, q.start, q.end, resolution.NATIVE[step])
        else:  # the stored windows inside the steps labelled in (start, end], rolled up
            lo, hi = math.floor(q.start / step) * step, math.floor(q.end / step) * step
            stored = self._stored(q.host, found, lo, hi, resolution.stored_for(step))
            windows = [rollup.downsample(w, step) for w in stored]
        return [
            SeriesPoints(metric, tags, unit, w)
            for (_, metric, tags, unit), w in zip(found, windows, strict=True)
        ]

    def _stored(
        self, host: str, found: list[Found], start: float, end: float, res: str
    ) -> list[Windows]:
        """The stored windows labelled in (start, end] at ``res`` (30s or 30m)."""
        windows = self.read_series(host, found, start, end, res)
        if res == "30m":
            windows = self._with_unrefreshed(host, found, windows, start, end)
        return windows

    def _with_unrefreshed(
        self, host: str, found: list[Found], stored: list[Windows], start: float, end: float
    ) -> list[Windows]:
        """30-minute windows no refresh has reached yet, computed from the 30-second points."""
        now = time.time()
        recent = rollup.fresh_labels(start, end, now)
        late = self.registry.late.pending([sid for sid, *_ in found], start, end)
        oldest = refresh.oldest_start(self, now)  # a window partly past retention stays stored
        want = [
            {lab for lab in recent | late.get(s, set()) if lab - H >= oldest} for s, *_ in found
        ]
        out = list(stored)
        for first, last in spans([lab for labels in want for lab in labels]):
            fine = self.read_series(host, found, first - engine.WINDOW_30M, last, "30s")
            for k, w in enumerate(fine):
                labels = {lab for lab in want[k] if first <= lab <= last}
                if labels and len(w.time):
                    out[k] = rollup.overlay(out[k], rollup.downsample(w), labels)
        return out

    # ---- reads every store answers from the registry ---------------------------------------

    def hosts(self) -> list[HostSummary]:
        """Every host that ever wrote, with its newest sample time and series count."""
        return [HostSummary(h, ts, n) for h, ts, n in self.registry.hosts() if ts is not None]

    def metrics(self, host: str) -> list[str]:
        """The metrics a host has written, sorted (empty: the host never wrote)."""
        return sorted({m for _, m, _, _ in self.registry.find(host, None, {}, None)})

    def tag_sets(self, host: str, metric: str) -> list[dict[str, str]]:
        """The tags of each series of one metric of a host."""
        return [tags for _, _, tags, _ in self.registry.find(host, metric, {}, None)]

    def host_state(self, host: str) -> list[SeriesState] | None:
        """The newest sample of each series of the host; None if the host never wrote."""
        rows = self.registry.state(host)
        return [SeriesState(*r) for r in rows] if rows else None


def with_server_carry(
    batch: Batch, ids: list[int], latest: dict[int, tuple[float, float]]
) -> Batch:
    """Senders without carries (section 8): the newest stored sample, when older, is the carry."""
    carry_ts, carry_val = batch.carry_ts.copy(), batch.carry_val.copy()
    first = batch.ts[batch.first_index()]
    for k, sid in enumerate(ids):
        got = latest.get(sid)
        if got is not None and math.isnan(carry_ts[k]) and got[0] < first[k]:
            carry_ts[k], carry_val[k] = got
    return batch.with_carry(carry_ts, carry_val)


def series_bounds(s: engine.Summaries, n_keys: int) -> np.ndarray:
    """Row ranges of each series in ``s``: rows of key k are ``bounds[k]:bounds[k + 1]``."""
    return np.searchsorted(s.sid, np.arange(n_keys + 1))


def windows_from_rows(rows: list[tuple], width: int = 0) -> Windows:
    """Windows from rows (time, mean, min, max, last, count, covered, integral); ``width`` is
    added to the stored time (InfluxDB stamps window starts)."""
    a = np.array(rows, dtype=np.float64).reshape(-1, 8)  # NULL (None) becomes NaN
    return Windows(
        a[:, 0].astype(np.int64) + width,
        a[:, 1],
        a[:, 2],
        a[:, 3],
        a[:, 4],
        a[:, 5].astype(np.int64),
        a[:, 6],
        a[:, 7],
    )
