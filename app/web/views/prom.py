"""``POST /api/v1/prom/write``: Prometheus remote write 1.0 (CONTRACT.md section 8.2)."""

from __future__ import annotations

import time

from flask import Response, request

from app.web.auth import sender_auth
from app.web.errors import ApiError
from app.web.views.common import (
    SENDER_ERRORS,
    blueprint,
    default_host,
    endpoint,
    ext,
    request_body,
    store_parts,
)

bp = blueprint("prom", __name__, url_prefix="/api/v1", description="Prometheus remote write")
PROTOBUF = "application/x-protobuf"
DOC = {
    "requestBody": {
        "required": True,
        "content": {PROTOBUF: {"schema": {"type": "string", "format": "binary"}}},
        "description": "A snappy (block format) compressed prometheus.WriteRequest "
        "(remote write 1.0; Content-Encoding: snappy).",
    },
}


@endpoint(
    bp,
    "POST /prom/write",
    "agent",
    None,
    status=204,
    errors=SENDER_ERRORS,
    doc=DOC,
    auth=sender_auth(),
    e400="refused series, each named with its reason; the rest was stored",
)
def prom_write() -> Response:
    """Store every valid series of a remote write request; 400 names the refused ones."""
    ctype = (request.mimetype or PROTOBUF).lower()
    if ctype != PROTOBUF or "proto=" in request.headers.get("Content-Type", ""):
        raise ApiError(
            415,
            "Content-Type must be application/x-protobuf (remote write 1.0)",
            {"Content-Type": [request.headers.get("Content-Type", "")]},
        )
    encoding = request.headers.get("Content-Encoding", "snappy").strip().lower()
    if encoding != "snappy":
        raise ApiError(415, "Content-Encoding must be snappy", {"Content-Encoding": [encoding]})
    decoder = ext().decoders["prom"]
    req = decoder.load(request_body(decoder.limits.max_body_bytes))
    sink = decoder.to_sink(req, time.time(), default_host())
    store_parts(sink)
    if not sink.refused:
        return Response(status=204)
    # Prometheus logs the answer's text and drops the batch: the text names every refused
    # series (up to MAX_REFUSED), in the API's one error shape.
    named = "; ".join(f"{name}: {why}" for name, why in sink.refused.items())
    raise ApiError(
        400,
        f"refused {sink.rejected} sample(s), the rest stored: {named}",
        {name: [why] for name, why in sink.refused.items()},
    )
