"""The naming rules of the contract (section 3), once for the server.

The patterns are anchored with ``^...$`` and always applied with ``re.fullmatch``: that way the
same text is a valid ECMAScript pattern for the OpenAPI (``\\Z`` is not) and a trailing newline
is never let through (``$`` alone would allow one in Python).
"""

from __future__ import annotations

import re

HOST_PATTERN = r"^[A-Za-z0-9._-]{1,128}$"
METRIC_PATTERN = r"^[a-z0-9._]{1,128}$"
TAG_KEY_PATTERN = r"^[a-z0-9_]{1,64}$"
HOST_CHARS = "1-128 of A-Z a-z 0-9 . _ -"
METRIC_CHARS = "1-128 of a-z 0-9 . _"
TAG_KEY_CHARS = "1-64 of a-z 0-9 _"
RESERVED_TAG_KEYS = ("host", "time")  # they would clash with the series' host and time columns
MAX_TAGS = 8
MAX_TAG_VALUE = 128

_HOST = re.compile(HOST_PATTERN)
_METRIC = re.compile(METRIC_PATTERN)
_TAG_KEY = re.compile(TAG_KEY_PATTERN)


def host_error(text: str) -> str | None:
    """Why ``text`` is not a host name, or None."""
    return None if _HOST.fullmatch(text) else f"must be {HOST_CHARS}"


def metric_error(text: str) -> str | None:
    """Why ``text`` is not a metric name, or None."""
    return None if _METRIC.fullmatch(text) else f"must be {METRIC_CHARS}"


def tag_key_error(text: str) -> str | None:
    """Why ``text`` is not a tag key, or None."""
    if not _TAG_KEY.fullmatch(text):
        return f"tag keys are {TAG_KEY_CHARS}"
    if text in RESERVED_TAG_KEYS:
        return f"tag key {text!r} is reserved"
    return None


def tag_value_error(text: str) -> str | None:
    """Why ``text`` is not a tag value, or None."""
    if not 1 <= len(text) <= MAX_TAG_VALUE or not text.isprintable():
        return f"must be 1-{MAX_TAG_VALUE} printable characters"
    return None
