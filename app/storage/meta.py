"""The metadata store: API tokens (hashed), job leases and the nodes serving one fleet, in an
SQLite file (one node) or PostgreSQL (several nodes)."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass

from app.storage.metadb import Conn, open_metadata

SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    host TEXT,
    created_at REAL NOT NULL,
    revoked_at REAL,
    expires REAL,
    uses_left INTEGER
);
CREATE TABLE IF NOT EXISTS jobs (
    name TEXT PRIMARY KEY,
    slot INTEGER NOT NULL,
    holder TEXT,
    ran_at REAL
);
CREATE TABLE IF NOT EXISTS nodes (
    id TEXT PRIMARY KEY,
    instance TEXT NOT NULL,
    settings TEXT NOT NULL,
    seen REAL NOT NULL
);
"""

ROLES = ("agent", "reader", "admin", "enroll")
ENV_ADMIN_ID = "env-admin"  # FLEETPULSE_ADMIN_TOKEN's caller: in no table, may do everything
# Columns added after the first release: an older metadata file gets them at open.
ADDED_COLUMNS = {"expires": "REAL", "uses_left": "INTEGER"}


NODE_TTL = 45.0  # seconds: a node not seen for this long no longer counts (heartbeat: 15 s)


class NodeMismatch(Exception):
    """A live node serving the same metadata runs with other settings (refuse to start)."""


class EnrollConflict(Exception):
    """The host already has a live agent token (409; no use of the enrollment token spent)."""


class EnrollRefused(Exception):
    """The enrollment token expired, is used up or was revoked meanwhile (401)."""


def hash_token(token: str) -> str:
    """sha256 is enough: tokens are 256-bit random, so there is nothing to brute-force."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: a role, and for agents the one host it may write."""

    id: str
    role: str
    host: str | None


@dataclass(frozen=True)
class TokenInfo:
    id: str
    role: str
    host: str | None
    created_at: float
    expires: float | None = None  # enrollment tokens: refused from then on
    uses_left: int | None = None  # enrollment tokens: None = unlimited


class MetaStore:
    """Tokens, leases and nodes; every lookup reads the database, so a revocation made on any
    node is seen by every node at its next request."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.db = open_metadata(url, SCHEMA, timeout)
        if self.db.dialect == "sqlite":
            self._add_columns()

    def _add_columns(self) -> None:
        """Bring an SQLite file of an older release up to date (PostgreSQL starts current)."""
        have = {r[1] for r in self.db.read("PRAGMA table_info(tokens)")}
        for name, kind in ADDED_COLUMNS.items():
            if name not in have:
                with self.db.tx() as con:  # another worker may have added it meanwhile
                    if name not in {r[1] for r in con.execute("PRAGMA table_info(tokens)")}:
                        con.execute(f"ALTER TABLE tokens ADD COLUMN {name} {kind}")

    def create_token(
        self,
        role: str,
        host: str | None,
        expires: float | None = None,
        uses: int | None = None,
        con: Conn | None = None,
    ) -> tuple[TokenInfo, str]:
        """A new token; its text is returned this once and only its hash is kept."""
        token = "fp_" + secrets.token_urlsafe(32)
        info = TokenInfo(secrets.token_hex(8), role, host, time.time(), expires, uses)
        row = (info.id, hash_token(token), role, host, info.created_at, expires, uses)
        sql = (
            "INSERT INTO tokens (id, hash, role, host, created_at, expires, uses_left) "
            "VALUES (?,?,?,?,?,?,?)"
        )
        if con is not None:
            con.execute(sql, row)
            return info, token
        with self.db.tx() as own:
            own.execute(sql, row)
        return info, token

    def lookup(self, token: str) -> Principal | None:
        """The caller; None for an unknown, revoked, expired or used-up token."""
        rows = self.db.read(
            "SELECT id, role, host FROM tokens WHERE hash=? AND revoked_at IS NULL "
            "AND (expires IS NULL OR expires > ?) AND (uses_left IS NULL OR uses_left > 0)",
            (hash_token(token), time.time()),
        )
        return Principal(*rows[0]) if rows else None

    def enroll(self, enroll_id: str, host: str) -> tuple[TokenInfo, str]:
        """A new agent token bound to ``host``, paid with one use of the enrollment token
        ``enroll_id``; all in one transaction, so two enrollments never both win."""
        with self.db.tx() as con:
            self.db.exclusive(con, f"enroll:{host}")  # one enrollment per host at a time
            live = con.execute(
                "SELECT 1 FROM tokens WHERE role='agent' AND host=? AND revoked_at IS NULL",
                (host,),
            ).fetchone()
            if live:
                raise EnrollConflict(f"host {host!r} already has an agent token")
            spent = con.execute(
                "UPDATE tokens SET uses_left = uses_left - 1 WHERE id=? AND role='enroll' "
                "AND revoked_at IS NULL AND (expires IS NULL OR expires > ?) AND uses_left > 0",
                (enroll_id, time.time()),
            ).rowcount
            unlimited = con.execute(
                "SELECT 1 FROM tokens WHERE id=? AND role IN ('enroll', 'admin') "
                "AND revoked_at IS NULL AND (expires IS NULL OR expires > ?) "
                "AND uses_left IS NULL",
                (enroll_id, time.time()),
            ).fetchone()
            if not spent and not unlimited and enroll_id != ENV_ADMIN_ID:
                raise EnrollRefused("the enrollment token expired, is used up or was revoked")
            return self.create_token("agent", host, con=con)

    def list_tokens(self) -> list[TokenInfo]:
        rows = self.db.read(
            "SELECT id, role, host, created_at, expires, uses_left FROM tokens "
            "WHERE revoked_at IS NULL ORDER BY created_at"
        )
        return [TokenInfo(*r) for r in rows]

    def revoke(self, token_id: str) -> bool:
        with self.db.tx() as con:
            cur = con.execute(
                "UPDATE tokens SET revoked_at=? WHERE id=? AND revoked_at IS NULL",
                (time.time(), token_id),
            )
        return cur.rowcount == 1

    def claim(self, name: str, slot: int, holder: str) -> bool:
        """Take the job ``name`` for ``slot`` unless some worker already did: runs once."""
        with self.db.tx() as con:
            con.execute(
                "INSERT INTO jobs (name, slot) VALUES (?, -1) ON CONFLICT (name) DO NOTHING",
                (name,),
            )
            cur = con.execute(
                "UPDATE jobs SET slot=?, holder=?, ran_at=? WHERE name=? AND slot<?",
                (slot, holder, time.time(), name, slot),
            )
        return cur.rowcount == 1

    def join(
        self, node: str, instance: str, settings: dict[str, str], now: float | None = None
    ) -> None:
        """Register this node, unless a live node of the same fleet (another name, or this name
        run elsewhere) has other settings: they would store different windows."""
        with self.db.tx() as con:
            self.db.exclusive(con, "nodes")  # two nodes starting at once see each other
            now = self._now(con) if now is None else now
            rows = con.execute(
                "SELECT id, settings, seen FROM nodes WHERE seen > ? AND NOT (id = ? AND "
                "instance = ?) ORDER BY id",
                (now - NODE_TTL, node, instance),
            ).fetchall()
            for other, text, seen in rows:
                theirs = json.loads(text)
                keys = sorted(set(settings) | set(theirs))
                diff = [k for k in keys if settings.get(k) != theirs.get(k)]
                if diff:
                    raise NodeMismatch(_mismatch(diff, settings, theirs, other, now - seen))
            self._upsert(con, node, instance, settings, now)
            con.execute("DELETE FROM nodes WHERE seen < ?", (now - 86400,))

    def beat(
        self, node: str, instance: str, settings: dict[str, str], now: float | None = None
    ) -> None:
        """Show this node is alive (its workers call it every few seconds)."""
        with self.db.tx() as con:
            self._upsert(con, node, instance, settings, self._now(con) if now is None else now)

    def leave(self, node: str, instance: str) -> None:
        """A node stopping cleanly: the fleet may then restart with other settings at once."""
        with self.db.tx() as con:
            con.execute("DELETE FROM nodes WHERE id=? AND instance=?", (node, instance))

    def _upsert(
        self, con: Conn, node: str, instance: str, settings: dict[str, str], now: float
    ) -> None:
        con.execute(
            "INSERT INTO nodes (id, instance, settings, seen) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET instance=excluded.instance, "
            "settings=excluded.settings, seen=excluded.seen",
            (node, instance, json.dumps(settings, sort_keys=True), now),
        )

    def _now(self, con: Conn) -> float:
        """The database's clock: liveness must not depend on the nodes' clocks agreeing."""
        if self.db.dialect == "sqlite":
            return time.time()
        sql = "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"
        return float(con.execute(sql).fetchone()[0])

    def ping(self) -> None:
        """Raise StorageUnavailable unless the metadata database answers now."""
        self.db.read("SELECT 1")

    def close(self) -> None:
        self.db.close()


def _mismatch(diff: list[str], ours: dict, theirs: dict, other: str, age: float) -> str:
    what = "; ".join(f"{k} is {ours.get(k)!r} here but {theirs.get(k)!r} there" for k in diff)
    return (
        f"node {other!r} (seen {age:.0f} s ago) serves the same FLEETPULSE_METADATA_URL with "
        f"other settings: {what}. Every node of a fleet must run with the same settings; to "
        f"change them, stop every node first (one stopped cleanly leaves at once, one killed "
        f"counts for {NODE_TTL:.0f} s)."
    )
