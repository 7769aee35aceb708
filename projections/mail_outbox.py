"""The e-mail outbox: one row per message the log calls for, keyed by the message's natural key
(domain.email.email_key). Not a read model: `ledger replay` leaves it alone, and it holds what
was decided and done (queued, sent, skipped, the attempts and their errors). Rows are written by
the mailer's follower in the transaction that moves its checkpoint, and claimed one at a time by
its sender (`FOR UPDATE SKIP LOCKED`). `GET /v1/emails` lists it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import Connection
from psycopg.types.json import Jsonb

from projections.queries import Page, decode_cursor, encode_cursor

PENDING, SENT, SKIPPED = "pending", "sent", "skipped"

OUTBOX_DDL = """
CREATE TABLE IF NOT EXISTS mail_outbox (
    key text PRIMARY KEY,
    seq bigserial NOT NULL,
    email_id uuid NOT NULL UNIQUE,
    kind text NOT NULL,
    subject_id uuid NOT NULL,
    customer_id uuid,
    position bigint NOT NULL,
    occurred_at timestamptz NOT NULL,
    details jsonb NOT NULL,
    status text NOT NULL DEFAULT 'pending',
    note text,
    attempts int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error text,
    recipient text,
    subject text,
    message_id text,
    transport text,
    sent_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS mail_outbox_due ON mail_outbox (next_attempt_at, seq) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS mail_outbox_customer ON mail_outbox (customer_id, seq);
CREATE INDEX IF NOT EXISTS mail_outbox_seq ON mail_outbox (seq);
"""


def create_outbox_table(conn: Connection[Any]) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(7429003)")  # processes starting together
        conn.execute(OUTBOX_DDL)


@dataclass(frozen=True)
class Queued:
    """A message the log calls for, as the follower queues it."""

    key: str
    email_id: UUID
    kind: str
    subject_id: UUID
    customer_id: UUID | None
    position: int
    occurred_at: datetime
    details: dict[str, Any]
    skipped: str | None = None  # why it is not sent (billed elsewhere), else None


def enqueue(conn: Connection[Any], message: Queued) -> None:
    """Queue once: the same key again (an event handled twice) changes nothing."""
    conn.execute(
        "INSERT INTO mail_outbox (key, email_id, kind, subject_id, customer_id, position, occurred_at,"
        " details, status, note) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (key) DO NOTHING",
        (
            message.key,
            message.email_id,
            message.kind,
            message.subject_id,
            message.customer_id,
            message.position,
            message.occurred_at,
            Jsonb(message.details),
            SKIPPED if message.skipped else PENDING,
            message.skipped,
        ),
    )


def claim_due(conn: Connection[Any], now: datetime | None) -> dict[str, Any] | None:
    """The next pending message due by `now` (the database's clock when None), locked for this
    transaction; one another sender holds is passed over."""
    row: dict[str, Any] | None = conn.execute(
        "SELECT * FROM mail_outbox WHERE status = 'pending' AND next_attempt_at <= coalesce(%s, now())"
        " ORDER BY next_attempt_at, seq LIMIT 1 FOR UPDATE SKIP LOCKED",
        (now,),
    ).fetchone()
    return row


def mark_sent(
    conn: Connection[Any],
    key: str,
    *,
    recipient: str,
    subject: str,
    message_id: str,
    transport: str,
    sent_at: datetime,
    attempted: bool,
) -> None:
    conn.execute(
        "UPDATE mail_outbox SET status = 'sent', recipient = %s, subject = %s, message_id = %s,"
        " transport = %s, sent_at = %s, attempts = attempts + %s, last_error = NULL WHERE key = %s",
        (recipient, subject, message_id, transport, sent_at, 1 if attempted else 0, key),
    )


def mark_failed(conn: Connection[Any], key: str, error: str, retry_at: datetime) -> None:
    conn.execute(
        "UPDATE mail_outbox SET attempts = attempts + 1, last_error = %s, next_attempt_at = %s"
        " WHERE key = %s",
        (error[:2000], retry_at, key),
    )


def list_emails(
    conn: Connection[Any],
    *,
    customer_id: UUID | None,
    kind: str | None,
    status: str | None,
    subject_id: UUID | None,
    cursor: str | None,
    limit: int,
) -> Page:
    clauses = ["seq > %(after)s"]
    params: dict[str, Any] = {"after": decode_cursor(cursor), "limit": limit + 1}
    for column, value in (
        ("customer_id", customer_id),
        ("kind", kind),
        ("status", status),
        ("subject_id", subject_id),
    ):
        if value is not None:
            clauses.append(f"{column} = %({column})s")
            params[column] = value
    rows: list[dict[str, Any]] = conn.execute(
        f"SELECT * FROM mail_outbox WHERE {' AND '.join(clauses)} ORDER BY seq LIMIT %(limit)s", params
    ).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_cursor(rows[-1]["seq"]) if more and rows else None)
