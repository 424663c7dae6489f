"""Line protocol names -> ours (CONTRACT.md section 8): metric and tag keys lowercased, every
character outside the section 3 alphabet becomes ``_``; a name still invalid is refused. The
results are cached per worker: a sender repeats the same few hundred measurement + tag sets."""

from __future__ import annotations

import re
from typing import NamedTuple

from app.core import names

SeriesId = tuple[str, str, tuple[tuple[str, str], ...]]  # (host, metric, sorted tag pairs)
_NOT_METRIC = re.compile(r"[^a-z0-9._]")
_NOT_TAG_KEY = re.compile(r"[^a-z0-9_]")


class Header(NamedTuple):
    """A line's measurement and tags, normalised, with the raw names they came from."""

    host: str | None  # the host tag, None when the line has none
    measurement: str  # normalised
    tags: tuple[tuple[str, str], ...]  # normalised keys, sorted, without host
    raw_measurement: str
    raw_keys: tuple[str, ...]  # sorted raw tag keys, to tell names that collide
    error: str | None = None


class Metric(NamedTuple):
    """A field's metric name, or why it cannot be one."""

    name: str
    error: str | None = None


def metric_name(text: str) -> str:
    """A measurement or field name in the metric alphabet."""
    return _NOT_METRIC.sub("_", text.lower())


def tag_key(text: str) -> str:
    """A tag key in the tag key alphabet."""
    return _NOT_TAG_KEY.sub("_", text.lower())


def header(measurement: str, tags: dict[str, str]) -> Header:
    """The normalised header of a line, with ``error`` set when the line must be refused."""
    host = tags.get("host")
    raw_keys = tuple(sorted(k for k in tags if k != "host"))
    m = metric_name(measurement)
    bad = Header(host, m, (), measurement, raw_keys)
    if host is not None and (why := names.host_error(host)) is not None:
        why = why.removeprefix("must be ")
        return bad._replace(error=f"host tag {host!r}: host names are {why}")
    if len(raw_keys) > names.MAX_TAGS:
        return bad._replace(error=f"{len(raw_keys)} tags besides host; at most {names.MAX_TAGS}")
    out: dict[str, str] = {}
    for raw in raw_keys:
        key, value = tag_key(raw), tags[raw]
        if (why := names.tag_key_error(key)) is not None:
            return bad._replace(error=f"tag key {raw!r} becomes {key!r}: {why}")
        if key in out:
            return bad._replace(error=f"tag keys {raw!r} and another both become {key!r}")
        if (why := names.tag_value_error(value)) is not None:
            return bad._replace(error=f"tag {raw!r}: values {why.removeprefix('must be ')}")
        out[key] = value
    return bad._replace(tags=tuple(sorted(out.items())))


class HeaderCache:
    """``header`` and metric names, remembered per worker (bounded; learnt again when full)."""

    def __init__(self, max_entries: int = 20_000) -> None:
        self.max_entries = max_entries
        self._headers: dict[tuple, Header] = {}
        self._metrics: dict[tuple[str, str], Metric] = {}

    def header(self, measurement: str, tags: dict[str, str]) -> Header:
        """The line's normalised header."""
        key = (measurement, tuple(tags.items()))
        found = self._headers.get(key)
        if found is None:
            if len(self._headers) >= self.max_entries:
                self._headers.clear()
            found = self._headers[key] = header(measurement, tags)
        return found

    def metric(self, measurement: str, field: str) -> Metric:
        """``measurement.field`` as a metric name (``measurement`` already normalised)."""
        key = (measurement, field)
        found = self._metrics.get(key)
        if found is None:
            if len(self._metrics) >= self.max_entries:
                self._metrics.clear()
            name = f"{measurement}.{metric_name(field)}"
            why = names.metric_error(name)
            shown = name if len(name) <= 60 else name[:60] + "..."
            found = Metric(name, None if why is None else f"metric {shown!r}: {why}")
            self._metrics[key] = found
        return found
