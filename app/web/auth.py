"""Who is calling (bearer tokens) and what they may do (roles: agent writes its own host,
reader reads, admin does everything). Rate limiting is its own decorator (``limits``)."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any

from flask import current_app, g, request

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
