"""One JSON error shape, ``{"error": ..., "details": {...}}``, from one handler."""

from __future__ import annotations

import logging

import orjson
from flask import Flask, Response, current_app
from werkzeug.exceptions import HTTPException

from app.core.errors import Invalid, StorageFull, StorageUnavailable, TooLarge
from app.ingest.problems import summary
from app.ingest.schema import flatten_errors

log = logging.getLogger("fleetpulse.errors")


class ApiError(Exception):
    """Raised by views for any non-2xx answer they decide on themselves."""

    def __init__(
        self,
        status: int,
        message: str,
        details: dict | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


def error_response(
    status: int, message: str, details: dict | None = None, headers: dict | None = None
) -> Response:
    body = orjson.dumps({"error": message, "details": details or {}})
    resp = Response(body, status=status, mimetype="application/json")
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def handle(e: Exception) -> Response:
    """Every error the app can raise, mapped to its status and the one shape."""
    retry = str(current_app.config["FLEETPULSE"].retry_after)
    if isinstance(e, ApiError):
        return error_response(e.status, e.message, e.details, e.headers)
    if isinstance(e, Invalid):
        return error_response(400, e.message, e.details)
    if isinstance(e, TooLarge):
        return error_response(413, str(e), {"_body": [str(e)]})
    if isinstance(e, StorageUnavailable):
        log.warning("storage unavailable: %s", e)
        return error_response(
            503,
            "storage unavailable, try again later",
            {"storage": [str(e)]},
            {"Retry-After": retry},
        )
    if isinstance(e, StorageFull):
        log.error("storage full: %s", e)
        return error_response(507, "storage is full; nothing was stored", {"storage": [str(e)]})
    if isinstance(e, HTTPException):
        details = {}
        data = getattr(e, "data", None)  # webargs/flask-smorest put parser messages here
        if data and "messages" in data:
            msgs = data["messages"]
            if len(msgs) == 1 and isinstance(next(iter(msgs.values())), dict):
                msgs = next(iter(msgs.values()))  # drop the "query"/"json" location level
            details = flatten_errors(msgs)
            message = summary(details) if details else "invalid request"
            return error_response(400, message, details)
        headers = {}
        if e.code == 405 and e.valid_methods:  # type: ignore[attr-defined]
            headers["Allow"] = ", ".join(e.valid_methods)  # type: ignore[attr-defined]
        return error_response(e.code or 500, e.description or e.name, details, headers)
    log.exception("unhandled error")
    return error_response(500, "internal server error")


def init_app(app: Flask) -> None:
    """Every exception, the app's own and Flask's, answers through ``handle``."""
    app.register_error_handler(Exception, handle)
