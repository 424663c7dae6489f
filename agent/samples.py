"""The sample type shared by collectors, the batcher and the probe, and what makes one valid."""

from __future__ import annotations

import re
from typing import NamedTuple

from agent.names import MAX_TAGS, metric_error, tag_key_error, tag_value_error


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
    if metric_error(sample.metric) is not None or len(sample.tags) > MAX_TAGS:
        return False
    for key, val in sample.tags.items():
        if tag_key_error(key) is not None or tag_value_error(val) is not None:
            return False
    value = sample.value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return value == value and value not in (float("inf"), float("-inf"))


def sanitize_host(name: str) -> str:
    """Turn a machine's host name into the API's host alphabet."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", name)[:128]
    return cleaned or "localhost"
