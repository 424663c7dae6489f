"""``POST /api/v1/samples``: our agents' JSON batches (CONTRACT.md section 3)."""

from __future__ import annotations

import time

from flask import request

from app.ingest.schema import SamplesIn
from app.web.auth import check_host, current_principal
from app.web.errors import ApiError
from app.web.schemas import SamplesOut
from app.web.views.common import blueprint, endpoint, ext, request_body

bp = blueprint("samples", __name__, url_prefix="/api/v1", description="Writing samples")
ERRORS = (400, 401, 403, 413, 415, 429, 503, 507)
OTHER_HOST = "another host's series"
DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": SamplesIn}},
        "description": "May be gzip-compressed (Content-Encoding: gzip).",
    }
}


@endpoint(bp, "POST /samples", "agent", SamplesOut, errors=ERRORS, doc=DOC, e403=OTHER_HOST)
def post_samples() -> dict:
    """Validate a batch, aggregate it into 30-second windows and store them, all or nothing."""
    principal = current_principal()
    ctype = (request.mimetype or "").lower()
    if ctype != "application/json":
        raise ApiError(
            415, "Content-Type must be application/json", {"Content-Type": [ctype or "missing"]}
        )
    decoder = ext().decoders["json"]
    body = request_body(decoder.limits.max_body_bytes)
    data = decoder.load(body, request.headers.get("Content-Encoding"))
    if isinstance(data, dict) and isinstance(data.get("host"), str):
        check_host(principal, data["host"])  # before validation: a 403 is no 400
    batch = decoder.to_batch(data, time.time())
    windows = ext().store.write(batch)
    return {"accepted": batch.samples, "windows": windows}
