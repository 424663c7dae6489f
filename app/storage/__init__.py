"""Storage: one write protocol (``base.Store``), the SQLite and InfluxDB backends, the series
registry and the metadata store. Imports the core only, never ingest or web."""

from __future__ import annotations

from urllib.parse import urlsplit

from app.storage.base import Store
from app.storage.metadb import sqlite_path
from app.storage.options import Credentials, StoreOptions

__all__ = ["Credentials", "Store", "StoreOptions", "open_store"]


def open_store(url: str, options: StoreOptions) -> Store:
    """The store named by the URL's scheme: sqlite, influxdb (1.x protocol) or influxdb2."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from app.storage.sqlite import SqliteStore

        path = sqlite_path(url, "FLEETPULSE_STORAGE_URL")
        return SqliteStore(path, options.hold, options.retention, options.late_after)
    if scheme == "influxdb":
        from app.storage.influxdb.store import InfluxStore

        return InfluxStore(url, options)
    if scheme == "influxdb2":
        from app.storage.influxdb.v2 import Influx2Store

        return Influx2Store(url, options)
    raise ValueError(
        f"FLEETPULSE_STORAGE_URL scheme {scheme!r} is not one of sqlite, influxdb, influxdb2"
    )
