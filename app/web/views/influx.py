"""InfluxDB line protocol senders (CONTRACT.md section 8.1): ``/write`` (1.x), ``/api/v2/write``
(2.x), and the start-up calls clients make (``/ping``, ``CREATE DATABASE``), so Telegraf, Glances
and the InfluxDB client libraries send to fleetpulse unchanged.

Errors here carry InfluxDB's keys besides ours: ``{"code", "message", "error", "details"}`` (2.x
clients read ``message``, 1.x clients and Telegraf's v1 output read ``error``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import orjson
from flask import Response, request

from app.ingest.line_protocol import PRECISION_V1, PRECISION_V2, precision_units
from app.web.auth import check_host, current_principal, sender_auth
from app.web.errors import handle
from app.web.schemas import InfluxErrorOut, QueryOut
from app.web.views.common import blueprint, endpoint, ext, request_body

bp = blueprint("influx", __name__, description="InfluxDB line protocol senders (section 8.1)")
VERSION = "1.8.10"  # the /write + /api/v2/write pair first came together in InfluxDB 1.8
CODES = {
    400: "invalid",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    413: "request too large",
    429: "too many requests",
    503: "unavailable",
    507: "unavailable",
}
WRITE_ERRORS = (400, 401, 403, 413, 429, 503, 507)
SHAPE = {"error_schema": InfluxErrorOut}
QUERY = {
    "errors": (400, 401, 403, 429),
    "doc": {"parameters": [{"in": "query", "name": "q", "schema": {"type": "string"}}]},
    "auth": sender_auth("p"),
    "e400": "a statement other than CREATE DATABASE or SHOW DATABASES",
    **SHAPE,
}
CREATE_DATABASE = re.compile(r"\s*CREATE\s+DATABASE\s+\S.*", re.IGNORECASE | re.DOTALL)
SHOW_DATABASES = re.compile(r"\s*SHOW\s+DATABASES\s*", re.IGNORECASE)
BODY = {
    "requestBody": {
        "required": False,  # an empty body writes nothing: 204, as InfluxDB 1.x answers
        "content": {"text/plain": {"schema": {"type": "string"}}},
        "description": "InfluxDB line protocol, optionally gzip (Content-Encoding: gzip); lines "
        "are stored or refused one by one: 400 lists the refused ones (partial write).",
    }
}


def _v1_params(names: str) -> list[dict]:
    """Query parameters accepted and ignored, for the OpenAPI."""
    return [{"in": "query", "name": n, "schema": {"type": "string"}} for n in names.split()]


def _write_route(route: str, params: str, query_token: str | None) -> Callable:
    """The contract of a write endpoint: agent role, 204, InfluxDB-shaped errors."""
    doc = {**BODY, "parameters": _v1_params(params)}
    auth = sender_auth(query_token)
    return endpoint(
        bp, route, "agent", None, status=204, errors=WRITE_ERRORS, doc=doc, auth=auth, **SHAPE
    )


@_write_route("POST /write", "db rp precision u p", "p")
def write_v1() -> Response:
    """InfluxDB 1.x write: ``db`` and ``rp`` ignored; precision n/ns, u/us, ms, s, m, h."""
    return _write(precision_units(request.args.get("precision"), PRECISION_V1))


@_write_route("POST /api/v2/write", "org bucket precision", None)
def write_v2() -> Response:
    """InfluxDB 2.x write: ``org`` and ``bucket`` ignored; precision ns, us, ms, s."""
    return _write(precision_units(request.args.get("precision"), PRECISION_V2))


def _write(per_second: int) -> Response:
    """Decode every line, check the hosts named, then store one batch per host."""
    principal = current_principal()
    decoder = ext().decoders["line"]
    body = request_body(decoder.limits.max_body_bytes)
    own = principal.host if principal.role == "agent" else None
    encoding = request.headers.get("Content-Encoding")
    decoded = decoder.decode(body, encoding, per_second, time.time(), own)
    for host in sorted(decoded.hosts):
        check_host(principal, host)  # any other host: 403 before anything is stored
    for batch in decoded.batches:
        ext().store.write(batch)
    if decoded.dropped:
        return influx_response(400, decoded.message(), decoded.details())
    return _with_version(Response(status=204))


@endpoint(bp, "GET /ping", None, None, status=204, **SHAPE)
def ping() -> Response:
    """Clients' liveness check (GET or HEAD): 204 with the X-Influxdb-Version header they read."""
    return _with_version(Response(status=204))


@endpoint(bp, "GET /query", "agent reader", QueryOut, **QUERY)
def query_get() -> Response:
    """Only clients' start-up calls (``CREATE DATABASE``, ``SHOW DATABASES``): 200; reads are
    /api/v1/series."""
    return _query()


@endpoint(bp, "POST /query", "agent reader", QueryOut, **QUERY)
def query_post() -> Response:
    """As GET /query; ``q`` in the query string or a form body."""
    return _query()


def _query() -> Response:
    """Clients' start-up statements: CREATE DATABASE (a no-op) and SHOW DATABASES (Glances
    checks its database is listed: every name exists here); anything else 400."""
    q = request.args.get("q") or request.form.get("q") or ""
    statements = [s for s in q.split(";") if s.strip()]
    known = (CREATE_DATABASE, SHOW_DATABASES)
    if not statements or not all(any(p.fullmatch(s) for p in known) for s in statements):
        return influx_response(
            400,
            "error parsing query: fleetpulse answers only CREATE DATABASE and SHOW DATABASES "
            "here (any database name is accepted); read with GET /api/v1/series",
            {"q": [f"unsupported statement: {q[:100]!r}"]},
        )
    db = request.args.get("db") or request.form.get("db") or "fleetpulse"
    results = [_result(i, s, db) for i, s in enumerate(statements)]
    resp = Response(orjson.dumps({"results": results}), mimetype="application/json")
    return _with_version(resp)


def _result(i: int, statement: str, db: str) -> dict:
    """One statement's answer, as InfluxDB 1.x shapes it."""
    if SHOW_DATABASES.fullmatch(statement):
        series = {"name": "databases", "columns": ["name"], "values": [[db]]}
        return {"statement_id": i, "series": [series]}
    return {"statement_id": i}


def influx_response(status: int, message: str, details: dict | None = None) -> Response:
    """An error both InfluxDB generations' clients read, in our shape too."""
    body = {
        "code": CODES.get(status, "internal error"),
        "message": message,
        "error": message,
        "details": details or {},
    }
    resp = Response(orjson.dumps(body), status=status, mimetype="application/json")
    resp.headers["X-Influxdb-Error"] = message[:1000]
    return _with_version(resp)


def _with_version(resp: Response) -> Response:
    """Every answer names an InfluxDB version: clients read it (the 1.x client's ``ping()``)."""
    if resp.status_code == 204:
        del resp.headers["Content-Type"]
    resp.headers["X-Influxdb-Version"] = VERSION
    resp.headers["X-Influxdb-Build"] = "OSS"
    return resp


@bp.errorhandler(Exception)
def _influx_error(e: Exception) -> Response:
    """Every error of these views, through the app's one handler, with InfluxDB's keys added."""
    ours = handle(e)
    data = orjson.loads(ours.get_data())
    resp = influx_response(ours.status_code, data["error"], data["details"])
    for k, v in ours.headers.items():
        if k.lower() not in ("content-type", "content-length"):
            resp.headers[k] = v
    return resp
