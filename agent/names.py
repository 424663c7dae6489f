"""The API's name rules, once for the agent: batches that break them would be answered 400.

Each function returns None for a valid text, else a short reason a person can act on. The
server has an identically shaped module; a shared test feeds both the same cases.
"""

from __future__ import annotations

import re

MAX_TAGS = 8

_HOST_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
_METRIC_RE = re.compile(r"[a-z0-9._]{1,128}")
_TAG_KEY_RE = re.compile(r"[a-z0-9_]{1,64}")
_RESERVED_TAG_KEYS = frozenset({"host", "time"})


def _reason(text: object, pattern: re.Pattern[str], limit: int, alphabet: str) -> str | None:
    """Why text does not fully match pattern (checked first: the common case is valid)."""
    if not isinstance(text, str):
        return f"not a string: {type(text).__name__}"
    if pattern.fullmatch(text):
        return None
    if not text:
        return "empty"
    if len(text) > limit:
        return f"longer than {limit} characters"
    bad = next((ch for ch in text if not pattern.fullmatch(ch)), text[0])
    return f"character {bad!r} is not one of {alphabet}"


def host_error(text: str) -> str | None:
    """A host is 1-128 of A-Z a-z 0-9 . _ - (it names a series and a token's scope)."""
    return _reason(text, _HOST_RE, 128, "A-Z a-z 0-9 . _ -")


def metric_error(text: str) -> str | None:
    """A metric is 1-128 of a-z 0-9 . _ (lower case, so one series never has two spellings)."""
    return _reason(text, _METRIC_RE, 128, "a-z 0-9 . _")


def tag_key_error(text: str) -> str | None:
    """A tag key is 1-64 of a-z 0-9 _ and not `host` or `time`, which the API's queries own."""
    reason = _reason(text, _TAG_KEY_RE, 64, "a-z 0-9 _")
    if reason is None and text in _RESERVED_TAG_KEYS:
        return f"{text!r} is reserved"
    return reason


def tag_value_error(text: str) -> str | None:
    """A tag value is 1-128 printable characters (free text such as a mount point is allowed)."""
    if not isinstance(text, str):
        return f"not a string: {type(text).__name__}"
    if not text:
        return "empty"
    if len(text) > 128:
        return "longer than 128 characters"
    if not text.isprintable():
        bad = next(ch for ch in text if not ch.isprintable())
        return f"character {bad!r} is not printable"
    return None
