"""Wire decoders: each turns a request body into one normalized ``core.records.Batch``, or
refuses it with every bad field named (``core.errors.Invalid``). Imports the core only.

Today: ``json_samples`` (our agents' JSON, CONTRACT.md section 3). Every decoder shares the body
handling (``body``), the limits (``Limits``) and the error bookkeeping (``problems``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """What any decoder enforces, from the server's settings."""

    max_body_bytes: int = 8 * 1024 * 1024  # after gunzip too
    max_points: int = 500_000
    retention_30s: float = 7 * 86400.0  # no point older than the 30-second series keeps
    future_slack: float = 300.0  # no point further ahead of the server's clock
    hold: float = 90.0  # a carry whose hold ends before retention is dropped
