"""The Flask room: ``create_app`` builds the app; each part hooks in with ``init_app``."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from flask import Flask, Response, g, request
from flask.json.provider import JSONProvider

from app.ingest.json_samples import JsonSamples
from app.ingest.line_protocol import LineProtocol
from app.ingest.prom_remote import PromRemote
from app.storage import Store, open_store
from app.storage.meta import MetaStore
from app.web.ratelimit import RateLimiter
from app.web.settings import Settings


@dataclass
class Extension:
    """What the app's parts share, in ``app.extensions["fleetpulse"]``."""

    settings: Settings
    store: Store
    meta: MetaStore
    limiter: RateLimiter
    decoders: dict[str, Any] = field(default_factory=dict)  # wire format -> decoder
    jobs: Any = None


class OrjsonProvider(JSONProvider):
    """Answers serialised with orjson: several times faster than the stdlib for big reads."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(orjson.dumps(obj), mimetype="application/json")


def create_app(config: Settings | dict | None = None) -> Flask:
    """Build the app from FLEETPULSE_* settings, or from ``config`` (Settings or overrides)."""
    from app.web import errors, jobs, views
    from app.web.views import page

    if isinstance(config, Settings):
        settings = config.resolved()
    else:
        settings = Settings.from_env(**(config or {}))
    app = Flask("app")
    app.json = OrjsonProvider(app)
    app.config["FLEETPULSE"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["fleetpulse"] = Extension(
        settings=settings,
        store=open_store(settings.storage_url, settings.store_options()),
        meta=MetaStore(settings.metadata_url),
        limiter=RateLimiter(settings.rate_limit, settings.rate_burst),
        decoders={
            "json": JsonSamples(settings.limits()),
            "prom": PromRemote(settings.limits()),
            "otlp": settings.limits(),
            "line": LineProtocol(settings.limits()),
        },
    )
    errors.init_app(app)
    views.init_app(app)
    page.init_app(app)
    jobs.init_app(app)
    _init_request_log(app)
    return app


def _init_request_log(app: Flask) -> None:
    """One log line per request: method, path, status, duration."""
    log = logging.getLogger("fleetpulse.request")

    @app.before_request
    def _start() -> None:
        g.t0 = time.perf_counter()

    @app.after_request
    def _log(resp: Response) -> Response:
        ms = (time.perf_counter() - g.get("t0", time.perf_counter())) * 1000
        log.info("%s %s %d %.1fms", request.method, request.path, resp.status_code, ms)
        return resp


__all__ = ["Settings", "create_app"]
