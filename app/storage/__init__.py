"""Storage is chosen once, in the app factory, from ``FLEETPULSE_STORAGE_URL``."""

from __future__ import annotations

from urllib.parse import urlsplit

from app.settings import Settings
from app.storage.base import StorageFull, StorageUnavailable, Store

__all__ = ["StorageFull", "StorageUnavailable", "Store", "open_store"]


def open_store(settings: Settings) -> Store:
    """The store named by the URL's scheme: sqlite, influxdb (1.x protocol) or influxdb2."""
    url = settings.storage_url
    scheme = urlsplit(url).scheme
    retention = {
        "raw": settings.raw_retention,
        "30s": settings.retention_30s,
        "30m": settings.retention_30m,
    }
    if scheme == "sqlite":
        from app.storage.sqlite import SqliteStore

        path = url[len("sqlite://") :]
        if not path.startswith("/"):
            raise ValueError(f"FLEETPULSE_STORAGE_URL needs an absolute path: {url!r}")
        path = "/" + path.lstrip("/")  # sqlite:///abs and sqlite:////abs name the same file
        return SqliteStore(path, settings.hold, retention)
    if scheme in ("influxdb", "influxdb2"):
        from app.storage.influxdb import open_influx

        return open_influx(settings, retention)
    raise ValueError(
        f"FLEETPULSE_STORAGE_URL scheme {scheme!r} is not one of sqlite, influxdb, influxdb2"
    )
