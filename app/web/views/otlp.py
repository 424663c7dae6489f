"""``POST /otlp/v1/metrics``: OTLP/HTTP metrics (CONTRACT.md section 8.3)."""

from __future__ import annotations

import time

from flask import Response, request

from app.ingest import otlp
from app.web.auth import sender_auth
from app.web.errors import ApiError
from app.web.views import common

bp = common.blueprint("otlp", __name__, url_prefix="/otlp", description="OpenTelemetry metrics")
DOC = {
    "requestBody": {
        "required": True,
        "content": {
            otlp.PROTOBUF: {"schema": {"type": "string", "format": "binary"}},
            otlp.JSON: {"schema": {"type": "object"}},
        },
        "description": "An ExportMetricsServiceRequest; may be gzip-compressed.",
    },
}


@common.endpoint(
    bp, "POST /v1/metrics", "agent", None, errors=common.SENDER_ERRORS, doc=DOC, auth=sender_auth()
)
def otlp_metrics() -> Response:
    """Store gauges, sums and counters' rates; answer how many points were refused and why."""
    ctype = (request.mimetype or "").lower()
    if ctype not in (otlp.PROTOBUF, otlp.JSON):
        raise ApiError(
            415,
            "Content-Type must be application/x-protobuf or application/json",
            {"Content-Type": [ctype or "missing"]},
        )
    limits = common.ext().decoders["otlp"]
    body = common.request_body(limits.max_body_bytes)
    req = otlp.load(body, request.headers.get("Content-Encoding"), ctype, limits)
    sink = otlp.to_sink(req, limits, time.time(), common.default_host())
    common.store_parts(sink)
    return Response(otlp.answer(sink, ctype), status=200, mimetype=ctype)
