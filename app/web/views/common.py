"""What every view module shares: the JSON parser, error documentation, the store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from flask import current_app, request
from flask_smorest import Blueprint
from webargs import core as webargs_core
from webargs.flaskparser import FlaskParser, is_json_request

from app.core.errors import TooLarge
from app.ingest.senders import Sink
from app.web.auth import check_host, current_principal, require
from app.web.limits import rate_limited
from app.web.schemas import ErrorOut

BEARER = [{"bearerAuth": []}]
ERRORS = {
    400: "invalid request: every bad field named",
    401: "missing or unknown token",
    403: "token lacks the right",
    404: "not found",
    409: "conflict",
    413: "body or point count over the limit",
    415: "not application/json",
    429: "rate-limited; see Retry-After",
    503: "storage unreachable; see Retry-After",
    507: "the store's disk is full; nothing was stored",
}

SENDER_ERRORS = (400, 401, 403, 413, 415, 429, 503, 507)  # other senders' protocols (section 8)


class _Parser(FlaskParser):
    """webargs' parser with orjson for JSON bodies, as /samples has: depth-limited, no NaN."""

    DEFAULT_VALIDATION_STATUS = 400

    def _raw_load_json(self, req: Any) -> Any:
        # The stdlib parser recurses per nesting level: 100k nested lists were a RecursionError
        # (a 500). orjson stops at depth 1024 with a JSONDecodeError, which webargs answers 400.
        if not is_json_request(req):
            return webargs_core.missing
        return orjson.loads(req.get_data(cache=True))


def blueprint(name: str, import_name: str, **kw: Any) -> Blueprint:
    """A flask-smorest blueprint whose arguments are parsed with orjson."""
    bp = Blueprint(name, import_name, **kw)
    bp.ARGUMENTS_PARSER = _Parser()
    return bp


def fails(bp: Blueprint, *codes: int, schema: Any = ErrorOut, **descriptions: str) -> Callable:
    """Document the error answers a view can give, all in the one ``ErrorOut`` shape (or a
    superset of it: ``schema``)."""

    def deco(view: Callable) -> Callable:
        for code in reversed(codes):
            text = descriptions.get(f"e{code}", ERRORS[code])
            view = bp.alt_response(code, schema=schema, description=text)(view)
        return view

    return deco


def endpoint(
    bp: Blueprint,
    route: str,
    role: str | None,
    out: Any,
    *,
    args: type | None = None,
    status: int = 200,
    errors: tuple[int, ...] = (),
    doc: dict | None = None,
    auth: Callable | None = None,
    error_schema: Any = ErrorOut,
    **descriptions: str,
) -> Callable:
    """A view's whole contract in one place: ``route`` ("GET /path"), rate limit and role (when
    ``role``), arguments, the answer's schema (views answer through it) and documented errors.
    ``role`` may name several ("agent reader"); ``auth`` replaces the bearer header as where
    the caller's token comes from."""
    method, rule = route.split(" ", 1)

    def deco(view: Callable) -> Callable:
        view = fails(bp, *errors, schema=error_schema, **descriptions)(view)
        view = bp.response(status, out)(view)
        if args is not None:
            location = "query" if method == "GET" else "json"
            view = bp.arguments(args, location=location, as_kwargs=False)(view)
        if role is not None:
            view = bp.doc(security=BEARER, **(doc or {}))(view)
            view = rate_limited(require(*role.split())(view))
        if auth is not None:
            view = auth(view)
        return bp.route(rule, methods=[method])(view)

    return deco


def request_body(limit: int) -> bytes:
    """The raw body; 413 when longer than ``limit``, chunked bodies included."""
    body = request.get_data(cache=False)
    # A chunked body is cut at MAX_CONTENT_LENGTH by werkzeug, not refused: anything left in
    # the server's stream means it was longer (it was a confusing "not valid JSON" 400).
    if (
        request.content_length is None
        and len(body) >= limit
        and request.environ["wsgi.input"].read(1)
    ):
        raise TooLarge(f"body is larger than {limit} bytes")
    return body


def ext() -> Any:
    """The app's shared parts (store, metadata, settings)."""
    return current_app.extensions["fleetpulse"]


def store_parts(sink: Sink) -> int:
    """Write each host's share of a section 8 request; an agent token writes only its own host
    (403 before anything is stored). Returns the windows written."""
    principal = current_principal()
    if principal.role == "agent":
        for host in sorted(sink.hosts()):
            check_host(principal, host)
    store = ext().store
    return sum(store.write(p.batch, p.counters) for p in sink.parts())


def default_host() -> str | None:
    """The host of a sample that names none: an agent token's own."""
    p = current_principal()
    return p.host if p.role == "agent" else None
