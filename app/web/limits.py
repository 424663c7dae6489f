"""The per-token rate limit as a view decorator (the buckets are in ``ratelimit``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import current_app

from app.web.auth import current_principal
from app.web.errors import ApiError
from app.web.ratelimit import retry_after


def rate_limited(view: Callable) -> Callable:
    """429 with Retry-After when the caller's token has spent its rate (401 without a token)."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        p = current_principal()
        wait = current_app.extensions["fleetpulse"].limiter.acquire(p.id)
        if wait > 0:
            after = retry_after(wait)  # whole seconds, the same in the body and the header
            raise ApiError(
                429,
                "too many requests for this token",
                {"Authorization": [f"rate limit exceeded; retry in {after} s"]},
                {"Retry-After": after},
            )
        return view(*args, **kwargs)

    return wrapped
