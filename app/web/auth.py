"""Who is calling (bearer tokens; the other senders' forms in ``sender_auth``) and what they may
do (roles: agent writes its own host, reader reads, admin does everything). Rate limiting is its
own decorator (``limits``)."""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
from collections.abc import Callable
from typing import Any

from flask import Request, current_app, g, request

from app.storage.meta import ENV_ADMIN_ID, MetaStore, Principal
from app.web.errors import ApiError

ENV_ADMIN = Principal(ENV_ADMIN_ID, "admin", None)


def current_principal() -> Principal:
    """The caller, from the Authorization header; 401 when missing or unknown."""
    cached = g.get("principal")
    if cached is not None:
        return cached
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(
            401,
            "missing bearer token",
            {"Authorization": ["expected 'Bearer TOKEN'"]},
            {"WWW-Authenticate": 'Bearer realm="fleetpulse"'},
        )
    g.principal = principal_for(token)
    return g.principal


def principal_for(token: str) -> Principal:
    """Who holds ``token``: the admin token, or a live one of the metadata store; else 401."""
    settings = current_app.config["FLEETPULSE"]
    if settings.admin_token and hmac.compare_digest(token.encode(), settings.admin_token.encode()):
        return ENV_ADMIN
    meta: MetaStore = current_app.extensions["fleetpulse"].meta
    found = meta.lookup(token)
    if found is None:
        raise ApiError(
            401,
            "unknown or revoked token",
            {"Authorization": ["token not recognised"]},
            {"WWW-Authenticate": 'Bearer realm="fleetpulse", error="invalid_token"'},
        )
    return found


def sender_token(query_param: str | None = None, req: Request | None = None) -> str | None:
    """The token as other senders pass it (CONTRACT.md section 8): ``Bearer T``, ``Token T``,
    HTTP Basic with T as the password, or (where allowed) a query parameter such as ``?p=T``."""
    req = request if req is None else req
    scheme, _, rest = req.headers.get("Authorization", "").partition(" ")
    scheme, rest = scheme.lower(), rest.strip()
    if scheme in ("bearer", "token") and rest:
        return rest
    if scheme == "basic" and rest:
        try:
            _, _, password = base64.b64decode(rest, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            password = ""
        if password:
            return password
    if query_param is not None:
        return req.args.get(query_param) or None
    return None


def token_from_request(req: Request, allow_query_p: bool = False) -> str | None:
    """``sender_token`` of ``req`` by the name the remote write/OTLP branch was asked to use."""
    return sender_token("p" if allow_query_p else None, req)


def sender_auth(query_param: str | None = None) -> Callable:
    """View decorator: the caller from ``sender_token`` (401 when there is none or it is
    unknown); ``require`` and the rate limit inside it then see this caller."""

    def deco(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            token = sender_token(query_param)
            if token is None:
                where = "'Token T', 'Bearer T' or Basic auth with T as the password"
                where += f", or ?{query_param}=T" if query_param else ""
                raise ApiError(
                    401,
                    "missing token",
                    {"Authorization": [f"expected {where}"]},
                    {"WWW-Authenticate": 'Basic realm="fleetpulse"'},
                )
            g.principal = principal_for(token)
            return view(*args, **kwargs)

        return wrapped

    return deco


def require(*roles: str) -> Callable:
    """View decorator: the caller must hold one of ``roles`` (admin always may)."""

    def deco(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            p = current_principal()
            if p.role != "admin" and p.role not in roles:
                raise ApiError(
                    403,
                    f"this {p.role} token may not do this",
                    {"Authorization": [f"needs one of: {', '.join(sorted({*roles, 'admin'}))}"]},
                )
            return view(*args, **kwargs)

        return wrapped

    return deco


def check_host(principal: Principal, host: str) -> None:
    """An agent token writes its own host's series, never another's."""
    if principal.role == "agent" and principal.host != host:
        raise ApiError(
            403,
            "this agent token may not write another host's series",
            {"host": [f"token is bound to {principal.host!r}"]},
        )
