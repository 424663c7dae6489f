"""The server's 30-minute job, the same for every store: refresh everything since the last
completed refresh (at least the last hour), recompute the windows marked late, expire.

Each store implements two primitives: ``rollup(after, upto, host)`` recomputes the 30-minute
windows of the 30-second windows labelled in (after, upto] (one host, or all), and
``expire(now)`` drops what retention no longer keeps where the database does not itself.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import TYPE_CHECKING

from app.core import engine
from app.storage.late import refresh_from, spans

if TYPE_CHECKING:
    from app.storage.base import Store

H = engine.WINDOW_30M
STEP = 12 * H  # one rollup call covers at most 6 hours, however long the catch-up


def run(store: Store, now: float) -> dict[str, int]:
    """One run of the job; a failure leaves the refresh mark as it was, so the next retries."""
    late = store.registry.late
    oldest = oldest_start(store, now)
    first = max(refresh_from(late.refreshed_until("30m"), now), oldest)
    end = math.ceil(now / H) * H
    written = sum(store.rollup(a, min(a + STEP, end), None) for a in range(first, end, STEP))
    recomputed = recompute_late(store, oldest)
    expired = store.expire(now)
    late.set_refreshed("30m", now)
    return {"downsampled": written, "late": recomputed, "expired": expired}


def oldest_start(store: Store, now: float) -> int:
    """The first 30-minute window whose 30-second points the retention still keeps whole."""
    keep = store.retention.get("30s", 0)
    return -(2**62) if keep <= 0 else math.ceil((now - keep) / H) * H


def recompute_late(store: Store, oldest: int) -> int:
    """The windows marked late, host by host, span by span; each host's marks are cleared once
    its windows are stored (a window partly past retention is left as it is)."""
    marks = store.registry.late.take()
    if not marks:
        return 0  # the steady state: nothing was written late
    hosts = store.registry.hosts_of(sorted({sid for sid, _, _ in marks}))
    by_host: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for mark in marks:
        by_host[hosts.get(mark[0], "")].append(mark)
    written = 0
    for host, own in by_host.items():
        labels = [label for _, label, _ in own if label - H >= oldest]
        for lo, hi in spans(labels):
            written += store.rollup(lo - H, hi, host)
        store.registry.late.clear(own)
    return written
