"""API keys: random bearer tokens stored only as SHA-256 hashes, each with one role."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

from psycopg_pool import ConnectionPool

ROLES = ("admin", "ingest", "read", "audit")
# What each role may do: admin everything; audit reads and audits; ingest only posts events.
GRANTS: dict[str, frozenset[str]] = {
    "admin": frozenset(ROLES),
    "audit": frozenset({"audit", "read"}),
    "read": frozenset({"read"}),
    "ingest": frozenset({"ingest"}),
}
ADMIN_TOKEN_KEY_ID = "admin-token"  # noqa: S105 - an actor id, not a secret


@dataclass(frozen=True)
class Principal:
    key_id: str
    role: str
    customer_id: UUID | None = None

    def may(self, permission: str) -> bool:
        return permission in GRANTS.get(self.role, frozenset())


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class KeyStore:
    CACHE_SECONDS = 30.0

    def __init__(self, pool: ConnectionPool, admin_token: str | None) -> None:
        self.pool = pool
        self.admin_token = admin_token
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    def mint(
        self, *, role: str, name: str, customer_id: UUID | None = None, created_by: str | None = None
    ) -> tuple[UUID, str]:
        """Create a key; the raw key is returned once and never stored."""
        key_id = uuid4()
        raw = self.issue_once(
            key_id=key_id, role=role, name=name, customer_id=customer_id, created_by=created_by
        )
        if raw is None:  # a fresh uuid4 is never taken
            raise RuntimeError(f"key id {key_id} exists")
        return key_id, raw

    def issue_once(
        self,
        *,
        key_id: UUID,
        role: str,
        name: str,
        customer_id: UUID | None = None,
        created_by: str | None = None,
    ) -> str | None:
        """Create the key `key_id` unless a key with that id exists: the raw key if this call
        created it, else None (it was issued before, and shown then). The id decides, in the
        database: of concurrent calls with one id, exactly one creates the key."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role}")
        raw = f"lk_{role}_{secrets.token_urlsafe(32)}"
        with self.pool.connection() as conn:
            created = conn.execute(
                "INSERT INTO api_keys (id, name, role, customer_id, key_hash, created_by)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                (key_id, name, role, customer_id, hash_key(raw), created_by),
            ).rowcount
        return raw if created == 1 else None

    def authenticate(self, raw: str) -> Principal | None:
        if self.admin_token and hmac.compare_digest(raw.encode(), self.admin_token.encode()):
            return Principal(ADMIN_TOKEN_KEY_ID, "admin")
        digest = hash_key(raw)
        cached = self._cache.get(digest)
        now = time.monotonic()
        if cached and now - cached[0] < self.CACHE_SECONDS:
            return cached[1]
        with self.pool.connection() as conn:
            row: Any = conn.execute(
                "SELECT id, role, customer_id FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL",
                (digest,),
            ).fetchone()
        principal = Principal(str(row["id"]), row["role"], row["customer_id"]) if row else None
        if principal is not None:
            self._cache[digest] = (now, principal)
        return principal

    def list(self) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            rows: Any = conn.execute(
                "SELECT id, name, role, customer_id, created_at, created_by, revoked_at"
                " FROM api_keys ORDER BY created_at"
            ).fetchall()
        return list(rows)

    def count(self, role: str) -> int:
        with self.pool.connection() as conn:
            row: Any = conn.execute(
                "SELECT count(*) AS n FROM api_keys WHERE role = %s AND revoked_at IS NULL", (role,)
            ).fetchone()
        return int(row["n"])

    def revoke(self, key_id: UUID) -> bool:
        with self.pool.connection() as conn:
            cur = conn.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL", (key_id,)
            )
            revoked = cur.rowcount == 1
        self._cache.clear()
        return revoked
