"""The HTTP API of CONTRACT.md sections 2, 3 and 6. Views get validated data only."""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
from flask import Flask, Response, current_app, request
from flask_smorest import Api, Blueprint
from webargs import core as webargs_core
from webargs.flaskparser import FlaskParser, is_json_request

from app import ingest
from app.auth import check_host, current_principal, require
from app.errors import ApiError, handle
from app.schemas import (
    EnergyArgs,
    EnergyOut,
    ErrorOut,
    HostOut,
    HostStateOut,
    SamplesIn,
    SamplesOut,
    SeriesArgs,
    SeriesOut,
    TokenIn,
    TokenListItem,
    TokenOut,
)
from app.storage.base import Query, SeriesPoints

MAX_WINDOWS = 10_000
AUTO_30S_MAX = 2880
STEP = {"30s": 30, "30m": 1800}
EPOCH_RE = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\Z")
MIN_TIME = -62135596800.0  # 0001-01-01T00:00:00Z
MAX_TIME = 253402300799.0  # 9999-12-31T23:59:59Z

samples_bp = Blueprint("samples", __name__, url_prefix="/api/v1", description="Writing samples")
read_bp = Blueprint("read", __name__, url_prefix="/api/v1", description="Reading series")
tokens_bp = Blueprint("tokens", __name__, url_prefix="/api/v1", description="API tokens (admin)")
health_bp = Blueprint("health", __name__, description="Liveness and readiness (no token)")


class _Parser(FlaskParser):
    """webargs' parser with orjson for JSON bodies, as /samples has: depth-limited, no NaN."""

    DEFAULT_VALIDATION_STATUS = 400

    def _raw_load_json(self, req: Any) -> Any:
        # The stdlib parser recurses per nesting level: 100k nested lists were a RecursionError
        # (a 500). orjson stops at depth 1024 with a JSONDecodeError, which webargs answers 400.
        if not is_json_request(req):
            return webargs_core.missing
        return orjson.loads(req.get_data(cache=True))


_PARSER = _Parser()
for _bp in (samples_bp, read_bp, tokens_bp):
    _bp.ARGUMENTS_PARSER = _PARSER

BEARER = [{"bearerAuth": []}]
ERRORS = {
    "400": "invalid request",
    "401": "missing or unknown token",
    "403": "token lacks the right",
}


def _json(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status=status, mimetype="application/json")


def _ext():
    return current_app.extensions["fleetpulse"]


def rfc3339(t: float) -> str:
    """UTC with a Z; milliseconds only when the time has a fraction."""
    dt = datetime.fromtimestamp(t, UTC)
    # isoformat, not strftime: glibc's %Y does not pad years before 1000 to four digits.
    spec = "seconds" if t == math.floor(t) else "milliseconds"
    return dt.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def parse_time(text: str, name: str) -> float:
    """Epoch seconds or RFC 3339 with an offset, else a 400 that names the parameter."""
    # Plain ASCII decimals only: float() would also take "1_000", " 7 ", "nan" or Arabic digits.
    parsed = float(text) if EPOCH_RE.match(text) else ingest._rfc3339(text)
    if parsed is None or not math.isfinite(parsed):
        raise ApiError(
            400,
            f"{name} is not a time",
            {name: ["use epoch seconds or RFC 3339 with an offset (e.g. 2026-11-23T10:00:00Z)"]},
        )
    if not MIN_TIME <= parsed <= MAX_TIME:
        # Answers carry times as RFC 3339, which has no year 0 nor year 10000.
        raise ApiError(
            400,
            f"{name} is out of range",
            {name: ["must lie between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z"]},
        )
    return parsed


def parse_range(args: dict) -> tuple[float, float, str]:
    """start/end/resolution with every edge case of the contract answered."""
    start = parse_time(args["start"], "start")
    end = parse_time(args["end"], "end")
    if start >= end:
        raise ApiError(400, "start must be before end", {"start": ["must be < end"]})
    res = args.get("resolution") or "auto"
    if res == "auto":
        res = "30s" if _windows(start, end, 30) <= AUTO_30S_MAX else "30m"
    n = _windows(start, end, STEP[res])
    if n > MAX_WINDOWS:
        raise ApiError(
            400,
            f"the range holds {n} windows of {res}; at most {MAX_WINDOWS} may be asked for",
            {"end": [f"narrow the range or use a coarser resolution (at most {MAX_WINDOWS})"]},
        )
    return start, end, res


def _windows(start: float, end: float, step: int) -> int:
    """Labels (multiples of step) in (start, end]."""
    return int(math.floor(end / step) - math.floor(start / step))


# ---- writing -------------------------------------------------------------------------------


@samples_bp.route("/samples", methods=["POST"])
@require("agent")
@samples_bp.doc(
    security=BEARER,
    requestBody={
        "required": True,
        "content": {"application/json": {"schema": SamplesIn}},
        "description": "May be gzip-compressed (Content-Encoding: gzip).",
    },
)
@samples_bp.response(200, SamplesOut)
@samples_bp.alt_response(400, schema=ErrorOut, description="invalid: every bad field named")
@samples_bp.alt_response(401, schema=ErrorOut, description=ERRORS["401"])
@samples_bp.alt_response(403, schema=ErrorOut, description="another host's series")
@samples_bp.alt_response(413, schema=ErrorOut, description="body or point count over the limit")
@samples_bp.alt_response(415, schema=ErrorOut, description="not application/json")
@samples_bp.alt_response(429, schema=ErrorOut, description="rate-limited; see Retry-After")
@samples_bp.alt_response(503, schema=ErrorOut, description="storage unreachable; see Retry-After")
def post_samples() -> Response:
    """Validate a batch, aggregate it into 30-second windows and store them, all or nothing."""
    principal = current_principal()
    ctype = (request.mimetype or "").lower()
    if ctype != "application/json":
        raise ApiError(
            415, "Content-Type must be application/json", {"Content-Type": [ctype or "missing"]}
        )
    settings = current_app.config["FLEETPULSE"]
    body = request.get_data(cache=False)
    # A chunked body is cut at MAX_CONTENT_LENGTH by werkzeug, not refused: anything left in
    # the server's stream means it was longer (it was a confusing "not valid JSON" 400).
    if (
        request.content_length is None
        and len(body) >= settings.max_body_bytes
        and request.environ["wsgi.input"].read(1)
    ):
        raise ingest.TooLarge(f"body is larger than {settings.max_body_bytes} bytes")
    data = ingest.decode_body(
        body, request.headers.get("Content-Encoding"), settings.max_body_bytes
    )
    if isinstance(data, dict) and isinstance(data.get("host"), str):
        check_host(principal, data["host"])
    batch = ingest.parse_samples(data, settings, time.time())
    check_host(principal, batch.host)
    windows = _ext().store.write(batch)
    return _json({"accepted": batch.samples, "windows": windows})


# ---- reading -------------------------------------------------------------------------------


def _points(sp: SeriesPoints, with_energy: bool) -> list[dict]:
    if len(sp.time) == 0:
        return []
    times = np.datetime_as_string(sp.time.astype("datetime64[s]"), unit="s")
    cols = {
        "mean": sp.mean.tolist(),
        "min": sp.min.tolist(),
        "max": sp.max.tolist(),
        "last": sp.last.tolist(),
        "count": sp.count.tolist(),
        "covered": sp.covered.tolist(),
    }
    if with_energy:
        cols["energy_wh"] = (sp.integral / 3600.0).tolist()
    names = list(cols)
    return [
        {"time": t + "Z", **dict(zip(names, vals, strict=True))}
        for t, vals in zip(times.tolist(), zip(*cols.values(), strict=True), strict=True)
    ]


@read_bp.route("/series", methods=["GET"])
@require("reader")
@read_bp.doc(security=BEARER)
@read_bp.arguments(SeriesArgs, location="query", as_kwargs=False)
@read_bp.response(200, SeriesOut)
@read_bp.alt_response(400, schema=ErrorOut, description=ERRORS["400"])
@read_bp.alt_response(401, schema=ErrorOut, description=ERRORS["401"])
@read_bp.alt_response(403, schema=ErrorOut, description=ERRORS["403"])
def get_series(args: dict) -> Response:
    """Windows of one metric of one host, each tag set a series; filter with tag.KEY=VALUE."""
    start, end, res = parse_range(args)
    # webargs drops unknown query keys, so tag filters come from the raw query string.
    tags = {k[4:]: v for k, v in request.args.items() if k.startswith("tag.")}
    found = _ext().store.query(
        Query(args["host"], start, end, res, metric=args["metric"], tags=tags)
    )
    return _json(
        {
            "host": args["host"],
            "metric": args["metric"],
            "resolution": res,
            "start": rfc3339(start),
            "end": rfc3339(end),
            "series": [
                {"tags": sp.tags, "unit": sp.unit, "points": _points(sp, sp.unit == "W")}
                for sp in found
            ],
        }
    )


@read_bp.route("/hosts", methods=["GET"])
@require("reader")
@read_bp.doc(security=BEARER)
@read_bp.response(200, HostOut(many=True))
@read_bp.alt_response(401, schema=ErrorOut, description=ERRORS["401"])
@read_bp.alt_response(403, schema=ErrorOut, description=ERRORS["403"])
def get_hosts() -> Response:
    """Every host that has written, when it was last seen and how many series it has."""
    return _json(
        [
            {"host": h.host, "last_seen": rfc3339(h.last_seen), "series": h.series}
            for h in _ext().store.hosts()
        ]
    )


@read_bp.route("/hosts/<string:host>", methods=["GET"])
@require("reader")
@read_bp.doc(security=BEARER)
@read_bp.response(200, HostStateOut)
@read_bp.alt_response(401, schema=ErrorOut, description=ERRORS["401"])
@read_bp.alt_response(403, schema=ErrorOut, description=ERRORS["403"])
@read_bp.alt_response(404, schema=ErrorOut, description="the host never wrote")
def get_host(host: str) -> Response:
    """The latest value of every series of a host: the fleet's state table."""
    state = _ext().store.host_state(host)
    if not state:
        raise ApiError(404, f"host {host!r} has never written", {"host": ["unknown host"]})
    return _json(
        {
            "host": host,
            "last_seen": rfc3339(max(s.time for s in state)),
            "series": [
                {
                    "metric": s.metric,
                    "tags": s.tags,
                    "unit": s.unit,
                    "time": rfc3339(s.time),
                    "value": s.value,
                }
                for s in state
            ],
        }
    )


@read_bp.route("/energy", methods=["GET"])
@require("reader")
@read_bp.doc(security=BEARER)
@read_bp.arguments(EnergyArgs, location="query", as_kwargs=False)
@read_bp.response(200, EnergyOut)
@read_bp.alt_response(400, schema=ErrorOut, description=ERRORS["400"])
@read_bp.alt_response(401, schema=ErrorOut, description=ERRORS["401"])
@read_bp.alt_response(403, schema=ErrorOut, description=ERRORS["403"])
def get_energy(args: dict) -> Response:
    """Watt-hours of each power series (unit W) over windows labelled in (start, end]."""
    start, end, res = parse_range(args)
    found = _ext().store.query(Query(args["host"], start, end, res, unit="W"))
    items = [
        {"metric": sp.metric, "tags": sp.tags, "energy_wh": float(sp.integral.sum() / 3600.0)}
        for sp in found
    ]
    return _json(
        {
            "host": args["host"],
            "start": rfc3339(start),
            "end": rfc3339(end),
            "resolution": res,
            "series": items,
            "total_wh": float(sum(i["energy_wh"] for i in items)),
        }
    )


# ---- tokens --------------------------------------------------------------------------------


@tokens_bp.route("/tokens", methods=["POST"])
@require("admin")
@tokens_bp.doc(security=BEARER)
@tokens_bp.arguments(TokenIn, as_kwargs=False)
@tokens_bp.response(201, TokenOut)
@tokens_bp.alt_response(400, schema=ErrorOut, description=ERRORS["400"])
@tokens_bp.alt_response(401, schema=ErrorOut, description=ERRORS["401"])
@tokens_bp.alt_response(403, schema=ErrorOut, description=ERRORS["403"])
def create_token(args: dict) -> Response:
    """A new token; the text is shown this once, only its hash is kept."""
    info, token = _ext().meta.create_token(args["role"], args.get("host"))
    return _json(
        {
            "id": info.id,
            "token": token,
            "role": info.role,
            "host": info.host,
            "created_at": rfc3339(info.created_at),
        },
        201,
    )


@tokens_bp.route("/tokens", methods=["GET"])
@require("admin")
@tokens_bp.doc(security=BEARER)
@tokens_bp.response(200, TokenListItem(many=True))
@tokens_bp.alt_response(401, schema=ErrorOut, description=ERRORS["401"])
@tokens_bp.alt_response(403, schema=ErrorOut, description=ERRORS["403"])
def list_tokens() -> Response:
    """Ids, roles, hosts and creation times: never the token text."""
    return _json(
        [
            {"id": t.id, "role": t.role, "host": t.host, "created_at": rfc3339(t.created_at)}
            for t in _ext().meta.list_tokens()
        ]
    )


@tokens_bp.route("/tokens/<string:token_id>", methods=["DELETE"])
@require("admin")
@tokens_bp.doc(security=BEARER)
@tokens_bp.response(204)
@tokens_bp.alt_response(401, schema=ErrorOut, description=ERRORS["401"])
@tokens_bp.alt_response(403, schema=ErrorOut, description=ERRORS["403"])
@tokens_bp.alt_response(404, schema=ErrorOut, description="no such live token")
def revoke_token(token_id: str) -> Response:
    """Revoke at once: every worker reads the token table on each request."""
    if not _ext().meta.revoke(token_id):
        raise ApiError(404, f"no live token with id {token_id!r}", {"id": ["not found"]})
    return Response(status=204)


# ---- health --------------------------------------------------------------------------------


@health_bp.route("/healthz", methods=["GET"])
@health_bp.response(200)
def healthz() -> Response:
    """The process is up (no storage call)."""
    return _json({"status": "ok"})


@health_bp.route("/readyz", methods=["GET"])
@health_bp.response(200)
@health_bp.alt_response(503, schema=ErrorOut, description="storage unreachable")
def readyz() -> Response:
    """Storage answers now: 200, else 503 with Retry-After."""
    _ext().store.ping()
    return _json({"status": "ready"})


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
    for bp in (samples_bp, read_bp, tokens_bp, health_bp):
        api.register_blueprint(bp)
    return api
