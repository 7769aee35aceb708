"""Webhook signing secrets, kept encrypted outside the log.

A Standard Webhooks secret must be readable again to sign (an HMAC key, unlike an API key that is
only compared), so it cannot be stored as a hash. It is encrypted with AES-256-GCM under the
ledger's webhook key and kept in `webhook_secrets`, a table that is not the log: the log, Kafka,
exports and the analytics copies hold only the secret's id and fingerprint. The endpoint and secret
ids are the associated data, so a ciphertext moved to another row does not decrypt.

What each party sees: an auditor reads who created or rotated which secret (by fingerprint) and
when; someone with a database dump holds only ciphertexts; deleting an endpoint deletes its rows,
after which its secrets are gone for good.

The key: LEDGER_WEBHOOKS_SECRETS_KEY (32 bytes, base64), or else a key generated on first use in
`<data dir>/webhook-secrets.key` (mode 0600), which suits one machine. Every process that creates
endpoints or delivers must use the same key; each row records the key's fingerprint, so a process
with another key says so instead of failing obscurely."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg import Connection
from psycopg_pool import ConnectionPool

SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret
SECRET_BYTES = 32
KEY_FILE = "webhook-secrets.key"

SECRETS_DDL = """
CREATE TABLE IF NOT EXISTS webhook_secrets (
    id uuid PRIMARY KEY,
    endpoint_id uuid NOT NULL,
    key_fingerprint text NOT NULL,
    nonce bytea NOT NULL,
    ciphertext bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS webhook_secrets_endpoint ON webhook_secrets (endpoint_id);
"""


class VaultKeyMismatch(Exception):
    """The secret was encrypted under another webhook key than this process's."""


@dataclass(frozen=True)
class NewSecret:
    id: UUID
    value: bytes

    @property
    def whsec(self) -> str:
        """The secret as a receiver configures it: `whsec_` + base64 of its bytes."""
        return SECRET_PREFIX + base64.b64encode(self.value).decode()

    @property
    def fingerprint(self) -> str:
        """What the log records: enough to tell secrets apart, nothing to recover one."""
        return "sha256:" + hashlib.sha256(self.value).hexdigest()[:16]


def new_secret(secret_id: UUID) -> NewSecret:
    return NewSecret(secret_id, secrets.token_bytes(SECRET_BYTES))


def load_key(configured: str | None, data_dir: Path) -> bytes:
    """The 32-byte key: configured (base64), else the data directory's key file, created once."""
    if configured:
        return _decode_key(configured, "LEDGER_WEBHOOKS_SECRETS_KEY")
    path = data_dir / KEY_FILE
    try:
        return _decode_key(path.read_text().strip(), str(path))
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    encoded = base64.b64encode(secrets.token_bytes(32)).decode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return _decode_key(path.read_text().strip(), str(path))
    with os.fdopen(fd, "w") as file:
        file.write(encoded + "\n")
    return _decode_key(encoded, str(path))


def _decode_key(encoded: str, where: str) -> bytes:
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{where} is not base64") from None
    if len(key) != 32:
        raise ValueError(f"{where} must hold 32 bytes (base64 of 32 random bytes), not {len(key)}")
    return key


class SecretVault:
    """The key is read on first use (a process that never touches webhooks never creates it)."""

    def __init__(self, pool: ConnectionPool, key: Callable[[], bytes]) -> None:
        self.pool = pool
        self._load_key = key
        self._cipher: tuple[AESGCM, str] | None = None

    def _key(self) -> tuple[AESGCM, str]:
        if self._cipher is None:
            key = self._load_key()
            fingerprint = hmac.new(key, b"ledger webhook secrets key", "sha256").hexdigest()[:16]
            self._cipher = (AESGCM(key), fingerprint)
        return self._cipher

    @property
    def _aead(self) -> AESGCM:
        return self._key()[0]

    @property
    def key_fingerprint(self) -> str:
        return self._key()[1]

    @staticmethod
    def _associated(endpoint_id: UUID, secret_id: UUID) -> bytes:
        return endpoint_id.bytes + secret_id.bytes

    def store(self, endpoint_id: UUID, secret: NewSecret) -> None:
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, secret.value, self._associated(endpoint_id, secret.id))
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO webhook_secrets (id, endpoint_id, key_fingerprint, nonce, ciphertext)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                (secret.id, endpoint_id, self.key_fingerprint, nonce, sealed),
            )

    def open(self, endpoint_id: UUID, secret_id: UUID, row: dict[str, Any]) -> bytes:
        """The secret's bytes from its row (`key_fingerprint`, `nonce`, `ciphertext`)."""
        if row["key_fingerprint"] != self.key_fingerprint:
            raise VaultKeyMismatch(
                f"webhook secret {secret_id} was encrypted under another LEDGER_WEBHOOKS_SECRETS_KEY"
                f" (key {row['key_fingerprint']}, this process has {self.key_fingerprint})"
            )
        try:
            return self._aead.decrypt(
                bytes(row["nonce"]), bytes(row["ciphertext"]), self._associated(endpoint_id, secret_id)
            )
        except InvalidTag:
            raise VaultKeyMismatch(f"webhook secret {secret_id} does not decrypt: altered or moved") from None

    def reveal(self, endpoint_id: UUID, secret_id: UUID) -> str | None:
        """The `whsec_` form of a stored secret (None once it is deleted)."""
        with self.pool.connection() as conn:
            row = secret_row(conn, secret_id)
        if row is None or row["endpoint_id"] != endpoint_id:
            return None
        return NewSecret(secret_id, self.open(endpoint_id, secret_id, row)).whsec

    def check_key(self) -> None:
        """Refuse to encrypt new secrets under a key other than the one existing ones use:
        the processes that deliver would not read them."""
        with self.pool.connection() as conn:
            row: Any = conn.execute(
                "SELECT key_fingerprint FROM webhook_secrets WHERE key_fingerprint <> %s LIMIT 1",
                (self.key_fingerprint,),
            ).fetchone()
        if row is not None:
            raise VaultKeyMismatch(
                f"existing webhook secrets use key {row['key_fingerprint']}, this process has"
                f" {self.key_fingerprint}: set LEDGER_WEBHOOKS_SECRETS_KEY to the same key everywhere"
            )


def secret_row(conn: Connection[Any], secret_id: UUID) -> dict[str, Any] | None:
    row: dict[str, Any] | None = conn.execute(
        "SELECT endpoint_id, key_fingerprint, nonce, ciphertext FROM webhook_secrets WHERE id = %s",
        (secret_id,),
    ).fetchone()
    return row


def create_secret_table(conn: Connection[Any]) -> None:
    conn.execute(SECRETS_DDL)
