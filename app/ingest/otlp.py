"""OTLP/HTTP metrics (contract section 8.3): an ``ExportMetricsServiceRequest`` (protobuf or
JSON, maybe gzip) -> a ``Sink`` of series per host.

Host = the resource attribute ``host.name``; metric = the metric's name; tags = the data point's
attributes; unit = the metric's unit. Gauges and non-monotonic sums are samples; monotonic
cumulative sums are counters; monotonic delta sums are rate samples (start, value / (time -
start)); histograms, exponential histograms and summaries are counted as rejected.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsPartialSuccess,
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from app.core.errors import Invalid
from app.ingest import Limits
from app.ingest.body import inflate
from app.ingest.counters import rate_unit
from app.ingest.senders import COUNTER, GAUGE, RATE, Sink, normalise

DELTA, CUMULATIVE = 1, 2
NO_RECORDED_VALUE = 1  # DataPointFlags: the point stands for "no value" (as a stale marker)
NOT_STORED = ("histogram", "exponential_histogram", "summary")
PROTOBUF, JSON = "application/x-protobuf", "application/json"


def attr_text(v: AnyValue) -> str:
    """An attribute's value as tag text."""
    kind = v.WhichOneof("value")
    if kind == "string_value":  # nearly always
        return v.string_value
    if kind == "bool_value":
        return "true" if v.bool_value else "false"
    if kind in ("int_value", "double_value"):
        return str(getattr(v, kind))
    if kind is None:
        return ""
    return json_format.MessageToJson(v, indent=None)


def load(
    body: bytes, encoding: str | None, ctype: str, limits: Limits
) -> ExportMetricsServiceRequest:
    """The request from a body in either encoding, inflated within the body limit."""
    raw = inflate(body, encoding, limits.max_body_bytes)
    req = ExportMetricsServiceRequest()
    try:
        if ctype == JSON:
            if not raw.lstrip().startswith(b"{"):
                raise Invalid("body must be a JSON object", {"_body": ["expected an object"]})
            json_format.Parse(raw, req, ignore_unknown_fields=True)
        else:
            req.ParseFromString(raw)
    except (DecodeError, json_format.ParseError, UnicodeDecodeError) as e:
        raise Invalid("body is not an OTLP ExportMetricsServiceRequest", {"_body": [str(e)]}) from e
    return req


def answer(sink: Sink, ctype: str) -> bytes:
    """The ``ExportMetricsServiceResponse``, in the request's encoding."""
    resp = ExportMetricsServiceResponse()
    if sink.rejected or sink.refused:
        reasons = "; ".join(f"{k}: {v}" for k, v in sink.refused.items())
        resp.partial_success.CopyFrom(
            ExportMetricsPartialSuccess(rejected_data_points=sink.rejected, error_message=reasons)
        )
    if ctype == JSON:
        return json_format.MessageToJson(resp, indent=None).encode()
    return resp.SerializeToString()


def to_sink(
    req: ExportMetricsServiceRequest, limits: Limits, now: float, default_host: str | None
) -> Sink:
    """Every data point of the request, normalised and checked, per host."""
    sink = Sink(limits, now)
    for rm in req.resource_metrics:
        host = default_host
        for kv in rm.resource.attributes:
            if kv.key == "host.name" and attr_text(kv.value):
                host = attr_text(kv.value)
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                _metric(sink, host, metric)
    return sink


def _metric(sink: Sink, host: str | None, metric: object) -> None:
    """One metric's data points into the sink, one series per attribute set."""
    data = metric.WhichOneof("data")
    if data is None:
        return
    points = getattr(metric, data).data_points
    kind = GAUGE
    if data in NOT_STORED:
        why = f"{data} data points are not stored"
    elif data == "sum" and metric.sum.is_monotonic:
        kind = {DELTA: RATE, CUMULATIVE: COUNTER}.get(metric.sum.aggregation_temporality)
        why = None if kind else "monotonic sum without temporality"
    else:
        why = None
    if host is None:
        why = why or "no host.name resource attribute"
    if why:
        sink.refuse(metric.name, why, len(points))
        return
    groups: dict[tuple, list[tuple[float, float, float]]] = defaultdict(list)
    for p in points:
        if p.flags & NO_RECORDED_VALUE:
            continue
        attrs = tuple([(kv.key, attr_text(kv.value)) for kv in p.attributes])
        v = p.as_double if p.WhichOneof("value") != "as_int" else float(p.as_int)
        groups[attrs].append((p.time_unix_nano / 1e9, v, p.start_time_unix_nano / 1e9 or np.nan))
    unit = metric.unit[:32] or None
    for attrs, pts in groups.items():
        _series(sink, host, metric.name, attrs, unit, kind, pts)


def _series(
    sink: Sink,
    host: str,
    metric: str,
    attrs: tuple,
    unit: str | None,
    kind: str,
    points: list[tuple[float, float, float]],
) -> None:
    """One series' points (time, value, start) into the sink."""
    name = metric + "{" + ",".join(f'{k}="{v}"' for k, v in attrs) + "}"
    key, err = normalise(metric, tuple((k, v) for k, v in attrs if v != ""), kind)
    if err:
        sink.refuse(name, err, len(points))
        return
    t, v, start = (list(c) for c in zip(*points, strict=True))
    if kind == RATE:  # a delta: its increase over (start, time], as a rate from start
        good = [k for k in range(len(t)) if t[k] > start[k]]  # a NaN start is never before
        if len(good) < len(t):
            sink.refuse(name, "delta point without a start before its time", len(t) - len(good))
        rates = [v[k] / (t[k] - start[k]) for k in good]
        sink.add(name, host, key, rate_unit(unit), kind, [start[k] for k in good], rates)
        return
    sink.add(name, host, key, unit, kind, t, v, start)  # a counter's rate unit: the sink's
