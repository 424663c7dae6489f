"""The one small storage interface; ``sqlite`` and ``influxdb`` implement it."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np

from app.engine import Summaries


class StorageUnavailable(Exception):
    """The database cannot be reached or did not answer in time: the API answers 503."""


class StorageFull(Exception):
    """The database has no space left: the API answers 507 and stores nothing."""


SeriesKey = tuple[str, tuple[tuple[str, str], ...]]  # (metric, sorted tag pairs)


@dataclass(frozen=True)
class Batch:
    """A validated request, ready to store; ``summaries.sid`` indexes ``keys``."""

    host: str
    keys: list[SeriesKey]
    units: list[str | None]
    summaries: Summaries
    latest_ts: np.ndarray  # per key: the newest point's timestamp
    latest_val: np.ndarray  # per key: the newest point's value
    raw_sid: np.ndarray  # the points themselves, for the optional raw series
    raw_ts: np.ndarray
    raw_val: np.ndarray

    @property
    def samples(self) -> int:
        """Points accepted (carries are not samples)."""
        return len(self.raw_ts)


@dataclass
class SeriesPoints:
    """One series' answer to a range read; columns in time order, ``time`` = right edge."""

    metric: str
    tags: dict[str, str]
    unit: str | None
    time: np.ndarray  # int64 epoch seconds (window right edge)
    mean: np.ndarray
    min: np.ndarray
    max: np.ndarray
    last: np.ndarray
    count: np.ndarray
    covered: np.ndarray
    integral: np.ndarray


@dataclass
class HostSummary:
    host: str
    last_seen: float
    series: int


@dataclass
class SeriesState:
    """A series' newest sample: the "state table" row."""

    metric: str
    tags: dict[str, str]
    unit: str | None
    time: float
    value: float


@dataclass
class Query:
    """A range read. ``metric`` None = every metric; ``unit`` filters (energy uses ``W``)."""

    host: str
    start: float
    end: float
    resolution: str  # "30s" | "30m"
    metric: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    unit: str | None = None


class Store(abc.ABC):
    """What the API needs from a database; chosen once in the app factory."""

    @abc.abstractmethod
    def write(self, batch: Batch) -> int:
        """Merge the batch's windows with stored state, atomically; return windows written."""

    @abc.abstractmethod
    def query(self, q: Query) -> list[SeriesPoints]:
        """Series of ``q.host`` matching the query, with points whose label is in (start, end]."""

    @abc.abstractmethod
    def hosts(self) -> list[HostSummary]:
        """Every host that ever wrote, with its newest sample time and series count."""

    @abc.abstractmethod
    def host_state(self, host: str) -> list[SeriesState] | None:
        """The newest sample of each series of the host; None if the host never wrote."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise StorageUnavailable unless the database answers now."""

    @abc.abstractmethod
    def run_jobs(self, now: float) -> dict[str, int]:
        """Downsample the last hour to 30-minute windows and enforce retention (where the
        database does not do it itself); return counts for the log."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections."""
