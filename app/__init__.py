"""fleetpulse API: ``create_app`` builds the Flask app; each part hooks in with ``init_app``."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from flask import Flask, g, request

from app.settings import Settings


@dataclass
class Extension:
    """What the app's parts share, in ``app.extensions["fleetpulse"]``."""

    settings: Settings
    store: Any
    meta: Any
    limiter: Any = None
    jobs: Any = None


def create_app(config: Settings | dict | None = None) -> Flask:
    """Build the app from FLEETPULSE_* settings, or from ``config`` (Settings or overrides)."""
    from app import api, errors, jobs
    from app.meta import MetaStore
    from app.ratelimit import RateLimiter
    from app.storage import open_store

    if isinstance(config, Settings):
        settings = config.resolved()
    else:
        settings = Settings.from_env(**(config or {}))
    app = Flask(__name__)
    app.config["FLEETPULSE"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["fleetpulse"] = Extension(
        settings=settings,
        store=open_store(settings),
        meta=MetaStore(settings.metadata_path),
        limiter=RateLimiter(settings.rate_limit, settings.rate_burst),
    )
    errors.init_app(app)
    api.init_app(app)
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
    def _log(resp):  # type: ignore[no-untyped-def]
        ms = (time.perf_counter() - g.get("t0", time.perf_counter())) * 1000
        log.info("%s %s %d %.1fms", request.method, request.path, resp.status_code, ms)
        return resp


__all__ = ["Settings", "create_app", "replace"]
