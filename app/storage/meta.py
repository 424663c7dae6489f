"""The metadata store: API tokens (hashed) and job leases, in SQLite."""

from __future__ import annotations

import hashlib
import secrets
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
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS jobs (
    name TEXT PRIMARY KEY,
    slot INTEGER NOT NULL,
    holder TEXT,
    ran_at REAL
);
"""

ROLES = ("agent", "reader", "admin")


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


class MetaStore:
    """Tokens and leases; every lookup reads the file, so a revocation is seen at once."""

    def __init__(self, path: str) -> None:
        self.db = SqliteDB(path, SCHEMA)

    def create_token(self, role: str, host: str | None) -> tuple[TokenInfo, str]:
        """A new token; its text is returned this once and only its hash is kept."""
        token = "fp_" + secrets.token_urlsafe(32)
        info = TokenInfo(secrets.token_hex(8), role, host, time.time())
        with self.db.tx() as con:
            con.execute(
                "INSERT INTO tokens (id, hash, role, host, created_at) VALUES (?,?,?,?,?)",
                (info.id, hash_token(token), role, host, info.created_at),
            )
        return info, token

    def lookup(self, token: str) -> Principal | None:
        rows = self.db.read(
            "SELECT id, role, host FROM tokens WHERE hash=? AND revoked_at IS NULL",
            (hash_token(token),),
        )
        return Principal(*rows[0]) if rows else None

    def list_tokens(self) -> list[TokenInfo]:
        rows = self.db.read(
            "SELECT id, role, host, created_at FROM tokens WHERE revoked_at IS NULL "
            "ORDER BY created_at"
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
