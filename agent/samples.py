"""The sample type shared by collectors, the batcher and the probe, and the name rules."""

from __future__ import annotations

import re
from typing import NamedTuple

METRIC_RE = re.compile(r"[a-z0-9._]{1,128}")
TAG_KEY_RE = re.compile(r"[a-z0-9_]{1,64}")
HOST_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
RESERVED_TAG_KEYS = frozenset({"host", "time"})
MAX_TAGS = 8


class Sample(NamedTuple):
    """One measurement; the series identity is (metric, tags)."""

    metric: str
    tags: dict[str, str]
    unit: str
    ts: float
    value: float


def tag_value(text: str) -> str:
    """Make free text (an interface or mount name) a valid tag value: 1-128 printable chars."""
    cleaned = "".join(ch if ch.isprintable() else "_" for ch in str(text))[:128]
    return cleaned or "_"


def valid_sample(sample: Sample) -> bool:
    """Reject what the API would answer 400 to, so one bad series never dead-letters a batch."""
    if not METRIC_RE.fullmatch(sample.metric) or len(sample.tags) > MAX_TAGS:
        return False
    for key, val in sample.tags.items():
        if key in RESERVED_TAG_KEYS or not TAG_KEY_RE.fullmatch(key):
            return False
        if not isinstance(val, str) or not 1 <= len(val) <= 128 or not val.isprintable():
            return False
    value = sample.value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return value == value and value not in (float("inf"), float("-inf"))


def sanitize_host(name: str) -> str:
    """Turn a machine's host name into the API's host alphabet."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", name)[:128]
    return cleaned or "localhost"
