"""OTLP/HTTP metrics through the Flask app on both stores (contract section 8.3), and a real
OpenTelemetry SDK exporting to a real gunicorn."""

from __future__ import annotations

import gzip
import json
import time

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2

from tests.conftest import ADMIN, now30, unique_host

NS = 1_000_000_000


def request_of(host: str | None, metrics: list[metrics_pb2.Metric]) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    if host:
        rm.resource.attributes.add(key="host.name").value.string_value = host
    rm.scope_metrics.add().metrics.extend(metrics)
    return req


def number_points(points, attrs=None):
    out = []
    for t, v, start in points:
        p = metrics_pb2.NumberDataPoint(time_unix_nano=int(t * NS), as_double=v)
        if start is not None:
            p.start_time_unix_nano = int(start * NS)
        for k, val in (attrs or {}).items():
            p.attributes.add(key=k).value.string_value = val
        out.append(p)
    return out


def gauge(name, points, unit="", attrs=None) -> metrics_pb2.Metric:
    m = metrics_pb2.Metric(name=name, unit=unit)
    m.gauge.data_points.extend(number_points(points, attrs))
    return m


def total(name, points, temporality=2, monotonic=True, unit="") -> metrics_pb2.Metric:
    m = metrics_pb2.Metric(name=name, unit=unit)
    m.sum.aggregation_temporality = temporality
    m.sum.is_monotonic = monotonic
    m.sum.data_points.extend(number_points(points))
    return m


def post(client, req, ctype="application/x-protobuf", token=ADMIN, gz=False):
    if ctype == "application/json":
        body = json_format.MessageToJson(req).encode()
    else:
        body = req.SerializeToString()
    headers = {"Content-Type": ctype, "Authorization": f"Bearer {token}"}
    if gz:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    return client.c.post("/otlp/v1/metrics", data=body, headers=headers)


def answer(r) -> ExportMetricsServiceResponse:
    out = ExportMetricsServiceResponse()
    if r.mimetype == "application/json":
        return json_format.Parse(r.data, out)
    out.ParseFromString(r.data)
    return out


def one(client, host, metric, start, end):
    r = client.series(host, metric, start, end, resolution="30s")
    assert r.status_code == 200, r.json
    (s,) = r.json["series"]
    return s


@pytest.mark.parametrize("ctype", ["application/x-protobuf", "application/json"])
def test_gauge_counter_delta_and_rejected_histogram(client, ctype) -> None:
    host, t0 = unique_host(), now30() - 60
    hist = metrics_pb2.Metric(name="latency")
    hist.histogram.data_points.add(time_unix_nano=t0 * NS, count=3)
    req = request_of(
        host,
        [
            gauge(
                "system.memory.usage",
                [(t0 + 5, 10.0, None), (t0 + 15, 30.0, None)],
                "By",
                {"state": "used"},
            ),
            # cumulative; the start time changes at t0 + 60: a reset although the value grows
            total(
                "energy",
                [(t0, 100.0, t0 - 5), (t0 + 30, 160.0, t0 - 5), (t0 + 60, 190.0, t0 + 50)],
                unit="J",
            ),
            total(
                "bytes.sent",
                [(t0 + 10, 300.0, t0), (t0 + 20, 100.0, t0 + 10)],
                temporality=1,
                unit="By",
            ),
            total("queue", [(t0 + 5, -4.0, t0)], monotonic=False),
            hist,
        ],
    )
    r = post(client, req, ctype, gz=ctype == "application/json")
    assert r.status_code == 200 and r.mimetype == ctype
    got = answer(r)
    assert got.partial_success.rejected_data_points == 1
    assert "histogram" in got.partial_success.error_message
    g = one(client, host, "system.memory.usage", t0, t0 + 30)
    assert g["tags"] == {"state": "used"} and g["unit"] == "By"
    assert g["points"][0]["mean"] == pytest.approx(22.0)  # (10 x 10 s + 30 x 15 s) / 25 s
    e = one(client, host, "energy.rate", t0, t0 + 60)
    assert e["unit"] == "W"
    integral = sum(p["mean"] * p["covered"] for p in e["points"])
    assert integral == pytest.approx(60.0 + 190.0)  # 160 - 100, then the reset: 190
    d = one(client, host, "bytes.sent.rate", t0, t0 + 30)
    assert d["unit"] == "By/s" and d["points"][0]["min"] == 10.0
    assert one(client, host, "queue", t0, t0 + 30)["points"][0]["mean"] == -4.0


def test_agent_token_host_rules(client) -> None:
    host, t0 = unique_host(), now30()
    agent = client.token_for("agent", host)
    r = post(client, request_of(None, [gauge("g", [(t0, 1.0, None)])]), token=agent)
    assert r.status_code == 200 and not answer(r).HasField("partial_success")
    assert one(client, host, "g", t0 - 30, t0 + 30)
    r = post(client, request_of("else", [gauge("h", [(t0, 1.0, None)])]), token=agent)
    assert r.status_code == 403
    r = post(client, request_of(None, [gauge("g", [(t0, 1.0, None)])]))  # admin: no host
    assert answer(r).partial_success.rejected_data_points == 1


def test_bad_bodies(client) -> None:
    r = client.c.post(
        "/otlp/v1/metrics",
        data=b"{",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN}"},
    )
    assert r.status_code == 400
    r = client.c.post("/otlp/v1/metrics", data=b"x", headers={"Authorization": f"Token {ADMIN}"})
    assert r.status_code == 415


@pytest.mark.e2e
def test_the_opentelemetry_sdk_exports_a_gauge_and_a_counter(live_api_any, monkeypatch) -> None:
    live_api = live_api_any
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.metrics import Observation
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    host = unique_host()
    token = live_api.token_for("agent", host)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", live_api.url + "/otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer%20{token}")
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=3_600_000)
    provider = MeterProvider([reader], resource=Resource.create({"host.name": host}))
    meter = provider.get_meter("test")
    counter = meter.create_counter("jobs.done", unit="{job}")
    meter.create_observable_gauge("temp", callbacks=[lambda _: [Observation(21.5)]])
    t0 = time.time()
    for add in (5, 7, 0):  # cumulative 5, 12, 12: the rates integrate to exactly 7
        counter.add(add)
        assert reader.force_flush()
        time.sleep(0.3)
    provider.shutdown()
    q = {"host": host, "start": t0 - 60, "end": t0 + 60, "resolution": "30s"}
    r = live_api.request(
        "GET", "/api/v1/series", live_api.admin_token, params={**q, "metric": "temp"}
    )
    assert r.json()["series"][0]["points"][-1]["last"] == 21.5
    r = live_api.request(
        "GET", "/api/v1/series", live_api.admin_token, params={**q, "metric": "jobs.done.rate"}
    )
    (s,) = r.json()["series"]
    assert s["unit"] == "{job}/s"
    assert sum(p["mean"] * p["covered"] for p in s["points"]) == pytest.approx(7.0)


def test_json_with_hex_exemplar_ids_and_snake_case(client) -> None:
    """OTLP/JSON as the spec writes it: camelCase, int64 as strings, exemplars with hex ids."""
    host, t0 = unique_host(), now30()
    doc = {
        "resourceMetrics": [
            {
                "resource": {"attributes": [{"key": "host.name", "value": {"stringValue": host}}]},
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "temp",
                                "unit": "Cel",
                                "gauge": {
                                    "dataPoints": [
                                        {
                                            "timeUnixNano": str(t0 * NS),
                                            "asDouble": 21.5,
                                            "exemplars": [
                                                {
                                                    "traceId": "5b8efff798038103d269b633813fc60c",
                                                    "spanId": "eee19b7ec3c1b174",
                                                    "asDouble": 1.0,
                                                }
                                            ],
                                        }
                                    ]
                                },
                            }
                        ]
                    }
                ],
            }
        ]
    }
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN}"}
    r = client.c.post("/otlp/v1/metrics", data=json.dumps(doc), headers=headers)
    assert r.status_code == 200, r.data
    assert one(client, host, "temp", t0 - 30, t0 + 30)["unit"] == "Cel"
    for bad in (b'"AAA"', b"[1]", b"{"):
        assert client.c.post("/otlp/v1/metrics", data=bad, headers=headers).status_code == 400
