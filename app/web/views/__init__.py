"""The views, one module per resource, registered on one flask-smorest ``Api``."""

from __future__ import annotations

from flask import Flask, Response
from flask_smorest import Api

from app.web.errors import handle
from app.web.schemas import ErrorOut, Time
from app.web.views import health, influx, otlp, prom, reads, samples, tokens


class _Api(Api):
    """flask-smorest's Api with its HTTP error handler replaced by the app's one shape."""

    # The OpenAPI's "default" response of every operation: {"error", "details"}, as sent
    # (flask-smorest's own {"code", "status", "message", "errors"} was never what came back).
    ERROR_SCHEMA = ErrorOut

    def handle_http_exception(self, error: Exception) -> Response:
        return handle(error)


def init_app(app: Flask) -> Api:
    """Register the blueprints on a flask-smorest Api, which also serves the OpenAPI."""
    app.config.setdefault("API_TITLE", "fleetpulse")
    app.config.setdefault("API_VERSION", "v1")
    app.config.setdefault("OPENAPI_VERSION", "3.0.3")
    app.config.setdefault("OPENAPI_URL_PREFIX", "/api/v1")
    app.config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    api = _Api(
        app,
        spec_kwargs={
            "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}}
        },
    )
    api.register_field(Time, "string", "date-time")
    for module in (samples, prom, otlp, reads, tokens, health, influx):
        api.register_blueprint(module.bp)
    return api
