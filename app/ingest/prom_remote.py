"""Prometheus remote write 1.0 (contract section 8.2): a snappy block-compressed protobuf
``WriteRequest`` -> a ``Sink`` of series per host.

A series ``name{labels}`` is metric ``name`` (counters, named ``*_total`` or typed counter in the
request's metadata: ``name.rate``), tags = its labels but ``__name__``, ``instance`` and
``host``; host = the ``host`` label, else ``instance`` without its ``:port``.
"""

from __future__ import annotations

import re

import cramjam
from google.protobuf.message import DecodeError

from app.core.errors import Invalid, TooLarge
from app.ingest import Limits
from app.ingest.prompb.remote_pb2 import WriteRequest
from app.ingest.prompb.types_pb2 import MetricMetadata
from app.ingest.senders import COUNTER, GAUGE, Sink, normalise

NOT_TAGS = ("__name__", "instance", "host")
# A unit from the name's suffix when the metadata gives none (Prometheus' base units).
SUFFIX_UNITS = {
    "seconds": "s",
    "bytes": "bytes",
    "joules": "J",
    "watts": "W",
    "volts": "V",
    "amperes": "A",
    "celsius": "celsius",
    "hertz": "Hz",
    "ratio": "ratio",
    "percent": "percent",
}
_PORT = re.compile(r"^(\[[^\]]*\]|[^:\[\]]*):\d+$")
CACHE_LIMIT = 100_000


def snappy_length(body: bytes) -> int:
    """The decompressed length a snappy block announces (its header's varint)."""
    n = shift = 0
    for i, b in enumerate(body[:5]):
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n
        shift += 7
        if i == 4:
            break
    raise Invalid("body is not snappy", {"_body": ["bad snappy length header"]})


def host_of_instance(instance: str) -> str:
    """``instance`` without its ``:port`` (IPv6 ``[::1]:9100`` gives ``::1``)."""
    m = _PORT.match(instance)
    host = m.group(1) if m else instance
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def unit_of(name: str, counter: bool) -> str | None:
    """The unit a Prometheus name says by its suffix (``_seconds_total`` -> ``s``)."""
    base = name[: -len("_total")] if counter and name.endswith("_total") else name
    return SUFFIX_UNITS.get(base.rsplit("_", 1)[-1])


class PromRemote:
    """The decoder of ``POST /api/v1/prom/write``; one per worker (it remembers label sets)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._names: dict[tuple, tuple] = {}

    def load(self, body: bytes) -> WriteRequest:
        """The request, refusing a decompressed length over the body limit before inflating."""
        size = snappy_length(body)
        if size > self.limits.max_body_bytes:
            raise TooLarge(
                f"body inflates to {size} bytes; the limit is {self.limits.max_body_bytes}"
            )
        try:
            raw = bytes(cramjam.snappy.decompress_raw(body))
        except cramjam.DecompressionError as e:
            raise Invalid("body is not snappy", {"_body": [str(e)]}) from e
        req = WriteRequest()
        try:
            req.ParseFromString(raw)
        except DecodeError as e:
            raise Invalid("body is not a remote write WriteRequest", {"_body": [str(e)]}) from e
        return req

    def to_sink(self, req: WriteRequest, now: float, default_host: str | None) -> Sink:
        """Every series of the request, normalised and checked, per host."""
        counters = {
            m.metric_family_name
            for m in req.metadata
            if m.type == MetricMetadata.MetricType.COUNTER
        }
        units = {m.metric_family_name: m.unit for m in req.metadata if m.unit}
        sink = Sink(self.limits, now)
        # What a series is may depend on this request's metadata: only plain ones are cached.
        cache: dict[tuple, tuple] = {} if counters or units else self._names
        for series in req.timeseries:
            labels = tuple((lab.name, lab.value) for lab in series.labels)
            info = cache.get(labels)
            if info is None:
                info = self._describe(labels, counters, units)
                if len(cache) < CACHE_LIMIT:
                    cache[labels] = info
            name, host, key, unit, kind, err = info
            host = host or default_host
            samples = series.samples
            if err or host is None:
                sink.refuse(name, err or "no host or instance label", len(samples))
                continue
            ts = [s.timestamp / 1000.0 for s in samples]
            sink.add(name, host, key, unit, kind, ts, [s.value for s in samples])
        return sink

    @staticmethod
    def _describe(labels: tuple, counters: set[str], units: dict[str, str]) -> tuple:
        """(text naming the series, host or None, key, unit, kind, why refused or None)."""
        d = dict(labels)
        metric = d.get("__name__", "")
        text = metric + "{" + ",".join(f'{k}="{v}"' for k, v in labels if k != "__name__") + "}"
        if not metric:
            return text, None, None, None, GAUGE, "no __name__ label"
        counter = metric.endswith("_total") or metric in counters
        kind = COUNTER if counter else GAUGE
        host = d.get("host") or (host_of_instance(d["instance"]) if d.get("instance") else None)
        tags = tuple((k, v) for k, v in labels if k not in NOT_TAGS)
        key, err = normalise(metric, tags, kind)
        unit = units.get(metric) or unit_of(metric, counter)
        return text, host, key, unit, kind, err
