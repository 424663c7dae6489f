"""Where metadata lives: one SQLite file (one node) or PostgreSQL (several API nodes).

Both speak the same small interface (``MetaDB``): transactions and reads of standard SQL with
``?`` placeholders, and per-host write locks. The registry, tokens, leases and marks are
written once against it, so single-node users change nothing.
"""

from __future__ import annotations

import contextlib
from typing import Any, Protocol
from urllib.parse import urlsplit


class Conn(Protocol):
    """A connection inside a transaction: what the registry and the metadata store use."""

    def execute(self, sql: str, args: Any = ...) -> Any: ...

    def executemany(self, sql: str, rows: Any) -> Any: ...


class Locks(Protocol):
    """Per-host write serialisation across workers (and, on PostgreSQL, across nodes)."""

    def acquire(self, host: str, timeout: float) -> Any: ...

    def release(self, handle: Any) -> None: ...

    def close(self) -> None: ...


class MetaDB(Protocol):
    """What the metadata store, the registry and the InfluxDB store need from a database."""

    dialect: str

    def tx(self) -> contextlib.AbstractContextManager[Conn]: ...

    def section_tx(self, lock: Any) -> contextlib.AbstractContextManager[Conn]: ...

    def values(
        self, con: Conn, head: str, tail: str, rows: list[tuple], types: tuple
    ) -> list[tuple]: ...

    def read(self, sql: str, args: tuple = ()) -> list[tuple]: ...

    def exclusive(self, con: Conn, key: str) -> None: ...

    def host_locks(self) -> Locks: ...

    def close(self) -> None: ...


def sqlite_path(url: str, name: str) -> str:
    """The absolute file of a ``sqlite:///ABS`` URL (``sqlite:////ABS`` names the same file)."""
    path = url[len("sqlite://") :]
    if not path.startswith("/"):
        raise ValueError(f"{name} needs an absolute path: {url!r}")
    return "/" + path.lstrip("/")


def open_metadata(url: str, schema: str, timeout: float = 5.0) -> MetaDB:
    """The metadata database named by ``FLEETPULSE_METADATA_URL`` (sqlite or postgresql)."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from app.storage.sqldb import SqliteDB

        return SqliteDB(sqlite_path(url, "FLEETPULSE_METADATA_URL"), schema)
    if is_shared(url):
        from app.storage.pgdb import PostgresDB

        return PostgresDB(url, schema, timeout)
    raise ValueError(
        f"FLEETPULSE_METADATA_URL scheme {scheme!r} is not one of sqlite, postgresql "
        f"(or postgres): {redacted(url)!r}"
    )


def redacted(url: str) -> str:
    """The URL without its password, for messages (everything between the scheme's ``//``
    user ``:`` and the last ``@``: a password with an unencoded ``@`` stays hidden too)."""
    head, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    cred, _, host = rest.rpartition("@")
    if ":" not in cred:
        return url
    return f"{head}://{cred.split(':', 1)[0]}:***@{host}"


def is_shared(url: str) -> bool:
    """Whether the metadata can serve several API nodes (PostgreSQL) or only one (SQLite)."""
    return urlsplit(url).scheme in ("postgresql", "postgres")
