"""Who is calling (bearer tokens) and what they may do (roles: agent writes its own host,
reader reads, admin does everything). Rate limiting is its own decorator (``limits``)."""

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


def token_from_request(req: Request, allow_query_p: bool = False) -> str | None:
    """The token of a section 8 sender: ``Bearer T``, ``Token T``, HTTP Basic with T as the
    password (any user name), or ``?p=T`` where allowed (line protocol v1); None if absent."""
    scheme, _, rest = req.headers.get("Authorization", "").strip().partition(" ")
    rest = rest.strip()
    scheme = scheme.lower()
    if scheme in ("bearer", "token") and rest:
        return rest
    if scheme == "basic" and rest:
        try:
            decoded = base64.b64decode(rest, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        password = decoded.partition(":")[2]
        return password or None
    if allow_query_p and req.args.get("p"):
        return req.args["p"]
    return None


def current_principal() -> Principal:
    """The caller, from the Authorization header; 401 when missing or unknown.

    Views of other senders' protocols (contract section 8) set ``g.any_token_scheme`` so the
    token may also come as ``Token T`` or HTTP Basic (``token_from_request``)."""
    cached = g.get("principal")
    if cached is not None:
        return cached
    if g.get("any_token_scheme"):
        token = token_from_request(request) or ""
        scheme = "bearer"
    else:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(
            401,
            "missing bearer token",
            {"Authorization": ["expected 'Bearer TOKEN'"]},
            {"WWW-Authenticate": 'Bearer realm="fleetpulse"'},
        )
    settings = current_app.config["FLEETPULSE"]
    if settings.admin_token and hmac.compare_digest(token.encode(), settings.admin_token.encode()):
        principal = ENV_ADMIN
    else:
        meta: MetaStore = current_app.extensions["fleetpulse"].meta
        found = meta.lookup(token)
        if found is None:
            raise ApiError(
                401,
                "unknown or revoked token",
                {"Authorization": ["token not recognised"]},
                {"WWW-Authenticate": 'Bearer realm="fleetpulse", error="invalid_token"'},
            )
        principal = found
    g.principal = principal
    return principal


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
