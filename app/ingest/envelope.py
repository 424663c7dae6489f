"""The samples envelope, remembering the series headers marshmallow has accepted."""

from __future__ import annotations

from app.core import names
from app.ingest.schema import SamplesIn

_SERIES_KEYS = frozenset({"metric", "tags", "unit", "carry", "points"})


def _header(s: dict) -> tuple | None:
    """What of a series object the schema judges, as a hashable key (None: not plain JSON)."""
    metric, tags, unit = s.get("metric"), s.get("tags", ()), s.get("unit")
    if type(metric) is not str or not (unit is None or type(unit) is str):
        return None
    if tags != ():
        if type(tags) is not dict:
            return None
        tags = tuple(tags.items())
        if not all(type(k) is str and type(v) is str for k, v in tags):
            return None
    return metric, tags, unit


class EnvelopeLoader:
    """``SamplesIn``, remembering the series headers (metric, tags, unit) it has accepted.

    An agent sends the same headers every 30 s, and marshmallow loading 40 nested objects field
    by field was most of a request's parse time. A request whose every header was accepted
    before, with nothing else the schema could refuse (unknown keys, null points, a bad host),
    skips the schema; anything else goes through it, errors and all.
    """

    def __init__(self, max_headers: int = 20_000) -> None:
        self.schema = SamplesIn()
        self.max_headers = max_headers
        self._headers: set[tuple] = set()

    def load(self, data: dict) -> dict:
        """The validated document; raises marshmallow's ValidationError."""
        doc = self._known(data)
        if doc is None:
            doc = self.schema.load(data)
            if len(self._headers) >= self.max_headers:
                self._headers.clear()  # bounded; they are learnt again
            self._headers.update(h for s in data["series"] if (h := _header(s)) is not None)
        return doc

    def _known(self, data: dict) -> dict | None:
        host, series = data.get("host"), data.get("series")
        if len(data) != 2 or type(host) is not str or names.host_error(host) is not None:
            return None
        if type(series) is not list or not series:
            return None
        out = []
        for s in series:
            if type(s) is not dict or s.get("points") is None or not s.keys() <= _SERIES_KEYS:
                return None
            if _header(s) not in self._headers:
                return None
            out.append(
                {
                    "metric": s["metric"],
                    "tags": s.get("tags", {}),
                    "unit": s.get("unit"),
                    "carry": s.get("carry"),
                    "points": s["points"],
                }
            )
        return {"host": host, "series": out}
