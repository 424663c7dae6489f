"""The metadata store: API tokens (hashed) and job leases, in SQLite."""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from dataclasses import dataclass

from app.storage.sqldb import SqliteDB

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
"""

ROLES = ("agent", "reader", "admin", "enroll")
ENV_ADMIN_ID = "env-admin"  # FLEETPULSE_ADMIN_TOKEN's caller: in no table, may do everything
# Columns added after the first release: an older metadata file gets them at open.
ADDED_COLUMNS = {"expires": "REAL", "uses_left": "INTEGER"}


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
    """Tokens and leases; every lookup reads the file, so a revocation is seen at once."""

    def __init__(self, path: str) -> None:
        self.db = SqliteDB(path, SCHEMA)
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
        con: sqlite3.Connection | None = None,
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
            con.execute("INSERT OR IGNORE INTO jobs (name, slot) VALUES (?, -1)", (name,))
            cur = con.execute(
                "UPDATE jobs SET slot=?, holder=?, ran_at=? WHERE name=? AND slot<?",
                (slot, holder, time.time(), name, slot),
            )
        return cur.rowcount == 1

    def close(self) -> None:
        self.db.close()
