"""Liveness and readiness, for load balancers and compose health checks (no token)."""

from __future__ import annotations

from app.web.schemas import StatusOut
from app.web.views.common import blueprint, endpoint, ext

bp = blueprint("health", __name__, description="Liveness and readiness (no token)")


@endpoint(bp, "GET /healthz", None, StatusOut)
def healthz() -> dict:
    """The process is up (no storage call)."""
    return {"status": "ok"}


@endpoint(bp, "GET /readyz", None, StatusOut, errors=(503,), e503="storage unreachable")
def readyz() -> dict:
    """Storage and the metadata database answer now: 200, else 503 with Retry-After."""
    ext().store.ping()
    ext().meta.ping()
    return {"status": "ready"}
