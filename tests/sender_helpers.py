"""Requests of other senders' protocols, built by hand, for the section 8 tests."""

from __future__ import annotations

import base64

import cramjam

from app.ingest.prompb.remote_pb2 import WriteRequest
from app.ingest.prompb.types_pb2 import MetricMetadata

PROM_HEADERS = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


def write_request(series: list[tuple[dict, list[tuple[float, float]]]], counters=()) -> bytes:
    """A snappy-compressed WriteRequest: ``series`` as (labels, [(seconds, value)])."""
    req = WriteRequest()
    for labels, samples in series:
        ts = req.timeseries.add()
        for k, v in sorted(labels.items()):
            ts.labels.add(name=k, value=v)
        for t, v in samples:
            ts.samples.add(timestamp=round(t * 1000), value=v)
    for name in counters:
        req.metadata.add(type=MetricMetadata.MetricType.COUNTER, metric_family_name=name)
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


def basic(token: str) -> str:
    """HTTP Basic with the token as the password."""
    return "Basic " + base64.b64encode(f"prometheus:{token}".encode()).decode()
