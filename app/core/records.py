"""The records that flow between the rooms, each defined once."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import numpy as np

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]  # (metric, sorted tag pairs)


@dataclass(frozen=True)
class Batch:
    """One request, whatever its wire format: validated, protocol-neutral columns.

    Points are sorted by series index then strictly increasing time; ``sid`` indexes ``keys``.
    ``carry_*`` are per series (NaN: none), strictly before that series' first point.
    """

    host: str
    keys: list[SeriesKey]
    units: list[str | None]
    sid: np.ndarray  # int64, per point
    ts: np.ndarray  # float64 epoch seconds, per point
    val: np.ndarray  # float64, per point
    carry_ts: np.ndarray  # float64, per series
    carry_val: np.ndarray  # float64, per series
    # Senders that send no carry (line protocol, remote write, OTLP): the store fills a missing
    # carry with the series' newest stored sample when it is older than the first point.
    server_carry: bool = False

    @property
    def samples(self) -> int:
        """Points accepted (carries are not samples)."""
        return len(self.ts)

    def first_index(self) -> np.ndarray:
        """Index of each series' oldest point (what a carry must precede)."""
        return np.searchsorted(self.sid, np.arange(len(self.keys)), side="left")

    def with_carry(self, carry_ts: np.ndarray, carry_val: np.ndarray) -> Batch:
        """The same batch with the store's carries (a frozen record is never changed)."""
        return dataclasses.replace(self, carry_ts=carry_ts, carry_val=carry_val)

    def last_index(self) -> np.ndarray:
        """Index of each series' newest point (every series has at least one)."""
        return np.searchsorted(self.sid, np.arange(len(self.keys)), side="right") - 1


# A counter's newest raw sample as the server keeps it: (time, value, start time or NaN).
CounterLast = tuple[float, float, float]


class RateFeed(Protocol):
    """Raw counter samples of one host whose rates need each counter's previous raw sample:
    the store calls ``apply`` under the host's write section with what it kept (contract
    section 8: counters are stored as exact per-second rates)."""

    keys: list[SeriesKey]  # the counters' identities (their rate series' metric and tags)

    def apply(
        self, batch: Batch, last: list[CounterLast | None]
    ) -> tuple[Batch, list[CounterLast | None]]:
        """``batch`` with the rate samples added, and each counter's newest raw sample."""
        ...


@dataclass(frozen=True)
class Windows:
    """Finished windows, columnar; ``time`` is each window's label (its right edge)."""

    time: np.ndarray  # int64 epoch seconds
    mean: np.ndarray
    min: np.ndarray
    max: np.ndarray
    last: np.ndarray
    count: np.ndarray  # int64
    covered: np.ndarray
    integral: np.ndarray  # value x seconds; energy_wh = integral / 3600 for unit W

    def take(self, idx: np.ndarray) -> Windows:
        """The windows at ``idx``, in that order."""
        return Windows(**{k: v[idx] for k, v in self.__dict__.items()})


@dataclass(frozen=True)
class SeriesPoints:
    """One series' answer to a range read: its identity and its windows in time order."""

    metric: str
    tags: dict[str, str]
    unit: str | None
    windows: Windows


class HostSummary(NamedTuple):
    """A row of ``/hosts``, straight from the registry."""

    host: str
    last_seen: float
    series: int


class SeriesState(NamedTuple):
    """A series' newest sample: the "state table" row behind ``/hosts/H``."""

    metric: str
    tags: dict[str, str]
    unit: str | None
    time: float
    value: float


@dataclass(frozen=True)
class Query:
    """A range read. ``metric`` None = every metric; ``unit`` filters (energy uses ``W``)."""

    host: str
    start: float
    end: float
    resolution: str  # "30s" | "30m"
    metric: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    unit: str | None = None
