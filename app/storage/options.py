"""What opening a store takes, explicitly: no settings object crosses into storage."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Credentials:
    """How the API signs in to InfluxDB: a token (2.x, 3.x) or a user and password (1.x)."""

    token: str = ""
    username: str = ""
    password: str = ""


@dataclass(frozen=True)
class StoreOptions:
    """The hold limit, retention per series kind, where metadata lives, InfluxDB access."""

    hold: float = 90.0
    retention: dict[str, float] = field(
        default_factory=lambda: {"raw": 0.0, "30s": 7 * 86400.0, "30m": 400 * 86400.0}
    )  # seconds per series kind; raw 0 = raw samples are not kept
    metadata_url: str = ""  # FLEETPULSE_METADATA_URL: the registry's database (InfluxDB store)
    credentials: Credentials = field(default_factory=Credentials)
    timeout: float = 5.0  # seconds per InfluxDB operation
    late_after: float = 1800.0  # 30-second windows older than this when written are "late"
