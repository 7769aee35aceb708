"""The tables of outgoing webhooks, and the statements that move a delivery along.

Not read models: deliveries are what happened in the world (an attempt, an answer), which the log
does not hold and a replay could not rebuild, so `ledger replay` leaves these tables alone.
- `webhook_endpoints`: the endpoints as the fan-out has applied their events, in the same
  transaction as its checkpoint (`projections/webhook_fanout.py`): which endpoint subscribed to
  what at each position of the log. The API lists endpoints from it.
- `webhook_messages`: one per ledger event that some endpoint subscribed to: its `webhook-id`
  and the exact body that is signed and sent, the same on every attempt.
- `webhook_deliveries`: one per (endpoint, message), its id derived from both, so fanning an event
  out twice creates nothing new. `failures` counts failures in a row since the schedule began
  (it picks the next delay; a resend starts it again); `attempts` counts every attempt.
- `webhook_attempts`: every attempt, with its answer.

Claiming a due delivery takes its row with FOR UPDATE SKIP LOCKED, numbers the attempt and leases
it (`leased_until`) in one short transaction: two processes never make the same attempt, no
database lock is held while waiting for a receiver, and a process that dies mid-attempt leaves
a lease that runs out, after which the next attempt is made (at least once)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from psycopg import Connection

from domain import ids

WEBHOOK_DDL = """
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id uuid PRIMARY KEY, seq bigint NOT NULL, url text NOT NULL, event_types text[] NOT NULL,
    description text, status text NOT NULL, secret_id uuid NOT NULL, secret_fingerprint text NOT NULL,
    previous_secret_id uuid, previous_secret_valid_until timestamptz,
    created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, position bigint NOT NULL,
    disabled_at timestamptz, disabled_reason text, deleted_at timestamptz
);
CREATE INDEX IF NOT EXISTS webhook_endpoints_seq ON webhook_endpoints (seq);
CREATE TABLE IF NOT EXISTS webhook_messages (
    id text PRIMARY KEY, position bigint NOT NULL UNIQUE, type text NOT NULL, body bytea NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id uuid PRIMARY KEY, seq bigserial NOT NULL UNIQUE, endpoint_id uuid NOT NULL,
    message_id text NOT NULL REFERENCES webhook_messages (id), status text NOT NULL,
    attempts int NOT NULL DEFAULT 0, failures int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz, leased_until timestamptz,
    last_status_code int, last_error text, delivered_at timestamptz,
    created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
    UNIQUE (endpoint_id, message_id)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, seq);
CREATE TABLE IF NOT EXISTS webhook_attempts (
    delivery_id uuid NOT NULL REFERENCES webhook_deliveries (id), attempt int NOT NULL,
    started_at timestamptz NOT NULL, duration_ms int, status_code int, outcome text, error text,
    response_excerpt text, next_attempt_at timestamptz,
    PRIMARY KEY (delivery_id, attempt)
);
"""

PENDING, SUCCEEDED, FAILED, CANCELED = "pending", "succeeded", "failed", "canceled"
INTERRUPTED = "interrupted"


def create_webhook_tables(conn: Connection[Any]) -> None:
    from infra.webhook_vault import create_secret_table

    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(7429003)")  # start-ups racing on the DDL
        conn.execute(WEBHOOK_DDL)
        create_secret_table(conn)


def message_id(stream_id: UUID, version: int) -> str:
    """The `webhook-id` of a ledger event: the same on every attempt and every resend, and for
    every endpoint, so a receiver deduplicates on it."""
    return "msg_" + ids.webhook_message_id(stream_id, version).hex


def delivery_id(endpoint_id: UUID, msg_id: str) -> UUID:
    return ids.webhook_delivery_id(endpoint_id, msg_id)


# ---------------------------------------------------------------------------- fan-out


def add_message(
    conn: Connection[Any],
    *,
    msg_id: str,
    position: int,
    webhook_type: str,
    body: bytes,
    endpoint_ids: list[UUID],
    now: datetime,
) -> None:
    """Record a message and a delivery of it to each endpoint, due now (nothing twice)."""
    conn.execute(
        "INSERT INTO webhook_messages (id, position, type, body, created_at) VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (id) DO NOTHING",
        (msg_id, position, webhook_type, body, now),
    )
    conn.execute(
        "INSERT INTO webhook_deliveries (id, endpoint_id, message_id, status, next_attempt_at, created_at,"
        " updated_at) SELECT d.id, d.endpoint_id, %s, 'pending', %s, %s, %s"
        " FROM unnest(%s::uuid[], %s::uuid[]) AS d(id, endpoint_id) ON CONFLICT DO NOTHING",
        (
            msg_id,
            now,
            now,
            now,
            [delivery_id(e, msg_id) for e in endpoint_ids],
            endpoint_ids,
        ),
    )


def cancel_pending(conn: Connection[Any], endpoint_id: UUID, reason: str, now: datetime) -> None:
    """Deliveries still waiting for an endpoint that is disabled or deleted are not attempted."""
    conn.execute(
        "UPDATE webhook_deliveries SET status = 'canceled', last_error = %s, next_attempt_at = NULL,"
        " updated_at = %s WHERE endpoint_id = %s AND status = 'pending'",
        (reason, now, endpoint_id),
    )


# ---------------------------------------------------------------------------- delivery


@dataclass(frozen=True)
class Claimed:
    """A delivery taken for one attempt, with what signing and sending it needs."""

    delivery_id: UUID
    endpoint_id: UUID
    msg_id: str
    attempt: int
    failures: int
    url: str
    body: bytes
    secrets: list[tuple[UUID, dict[str, Any]]]  # (secret id, its vault row), current first


CLAIM = """
WITH due AS (
    SELECT d.id FROM webhook_deliveries d
    JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.status = 'enabled'
    WHERE d.status = 'pending' AND d.next_attempt_at <= %(now)s
      AND (d.leased_until IS NULL OR d.leased_until <= %(now)s)
    ORDER BY d.next_attempt_at, d.seq
    LIMIT %(limit)s
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_deliveries d
SET attempts = d.attempts + 1, leased_until = %(lease)s, updated_at = %(now)s
FROM due WHERE d.id = due.id
RETURNING d.id, d.endpoint_id, d.message_id, d.attempts, d.failures
"""

CLAIMED_DETAILS = """
SELECT d.id, e.url, m.body,
       e.secret_id, s.key_fingerprint, s.nonce, s.ciphertext,
       CASE WHEN e.previous_secret_valid_until > %(now)s THEN e.previous_secret_id END AS previous_secret_id,
       ps.key_fingerprint AS previous_key_fingerprint, ps.nonce AS previous_nonce,
       ps.ciphertext AS previous_ciphertext
FROM unnest(%(ids)s::uuid[]) AS c(id)
JOIN webhook_deliveries d ON d.id = c.id
JOIN webhook_endpoints e ON e.id = d.endpoint_id
JOIN webhook_messages m ON m.id = d.message_id
LEFT JOIN webhook_secrets s ON s.id = e.secret_id
LEFT JOIN webhook_secrets ps ON ps.id = e.previous_secret_id AND e.previous_secret_valid_until > %(now)s
"""


def claim_due(conn: Connection[Any], now: datetime, lease: timedelta, limit: int) -> list[Claimed]:
    """Take up to `limit` due deliveries of enabled endpoints for one attempt each."""
    with conn.transaction():
        rows: list[dict[str, Any]] = conn.execute(
            CLAIM, {"now": now, "lease": now + lease, "limit": limit}
        ).fetchall()
        if not rows:
            return []
        claimed_ids = [r["id"] for r in rows]
        # An attempt that never got its outcome recorded (its process stopped) says so.
        conn.execute(
            "UPDATE webhook_attempts SET outcome = 'interrupted',"
            " error = 'no outcome was recorded: the sending process stopped'"
            " WHERE delivery_id = ANY(%s) AND outcome IS NULL",
            (claimed_ids,),
        )
        conn.execute(
            "INSERT INTO webhook_attempts (delivery_id, attempt, started_at)"
            " SELECT * FROM unnest(%s::uuid[], %s::int[], %s::timestamptz[])",
            (claimed_ids, [r["attempts"] for r in rows], [now] * len(rows)),
        )
        details = {
            d["id"]: d for d in conn.execute(CLAIMED_DETAILS, {"ids": claimed_ids, "now": now}).fetchall()
        }
    claimed = []
    for row in rows:
        detail: dict[str, Any] = details[row["id"]]
        found: list[tuple[UUID, dict[str, Any]]] = []
        if detail["ciphertext"] is not None:
            found.append((detail["secret_id"], _vault_row(detail, "")))
        if detail["previous_secret_id"] is not None and detail["previous_ciphertext"] is not None:
            found.append((detail["previous_secret_id"], _vault_row(detail, "previous_")))
        claimed.append(
            Claimed(
                delivery_id=row["id"],
                endpoint_id=row["endpoint_id"],
                msg_id=row["message_id"],
                attempt=row["attempts"],
                failures=row["failures"],
                url=detail["url"],
                body=bytes(detail["body"]),
                secrets=found,
            )
        )
    return claimed


def _vault_row(detail: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {
        "key_fingerprint": detail[f"{prefix}key_fingerprint"],
        "nonce": detail[f"{prefix}nonce"],
        "ciphertext": detail[f"{prefix}ciphertext"],
    }


@dataclass(frozen=True)
class Outcome:
    """What to record of one attempt: its answer and what follows."""

    status: str  # the delivery's status after it: pending (a retry), succeeded, failed
    outcome: str  # the attempt's: succeeded, retry, failed, gone, interrupted, not_sent
    finished_at: datetime
    duration_ms: int | None = None
    status_code: int | None = None
    error: str | None = None
    response_excerpt: str | None = None
    next_attempt_at: datetime | None = None
    failures: int = 0  # the delivery's failures in a row after this attempt


def record_outcome(conn: Connection[Any], claimed: Claimed, outcome: Outcome) -> None:
    with conn.transaction():
        conn.execute(
            "UPDATE webhook_attempts SET duration_ms = %s, status_code = %s, outcome = %s, error = %s,"
            " response_excerpt = %s, next_attempt_at = %s WHERE delivery_id = %s AND attempt = %s",
            (
                outcome.duration_ms,
                outcome.status_code,
                outcome.outcome,
                outcome.error,
                outcome.response_excerpt,
                outcome.next_attempt_at,
                claimed.delivery_id,
                claimed.attempt,
            ),
        )
        # Only while this attempt is still the delivery's latest: a lease that ran out and was
        # taken over leaves the newer attempt in charge.
        conn.execute(
            "UPDATE webhook_deliveries SET status = %s, failures = %s, next_attempt_at = %s,"
            " leased_until = NULL, last_status_code = %s, last_error = %s, updated_at = %s,"
            " delivered_at = CASE WHEN %s = 'succeeded' THEN %s ELSE delivered_at END"
            " WHERE id = %s AND attempts = %s AND status = 'pending'",
            (
                outcome.status,
                outcome.failures,
                outcome.next_attempt_at,
                outcome.status_code,
                outcome.error,
                outcome.finished_at,
                outcome.status,
                outcome.finished_at,
                claimed.delivery_id,
                claimed.attempt,
            ),
        )


def disable_endpoint(conn: Connection[Any], endpoint_id: UUID, reason: str, now: datetime) -> None:
    """What the fan-out will apply from the Disabled event, done at once by the sender that got
    the 410, so no other delivery to the endpoint is attempted meanwhile."""
    with conn.transaction():
        conn.execute(
            "UPDATE webhook_endpoints SET status = 'disabled', disabled_at = coalesce(disabled_at, %s),"
            " disabled_reason = coalesce(disabled_reason, %s) WHERE id = %s AND status = 'enabled'",
            (now, reason, endpoint_id),
        )
        cancel_pending(conn, endpoint_id, f"endpoint disabled: {reason}", now)


# ---------------------------------------------------------------------------- the API's reads


def get_endpoint(conn: Connection[Any], endpoint_id: UUID) -> dict[str, Any] | None:
    row: dict[str, Any] | None = conn.execute(
        "SELECT * FROM webhook_endpoints WHERE id = %s AND status <> 'deleted'", (endpoint_id,)
    ).fetchone()
    return row


def list_endpoints(conn: Connection[Any], after_seq: int, limit: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = conn.execute(
        "SELECT * FROM webhook_endpoints WHERE status <> 'deleted' AND seq > %s ORDER BY seq LIMIT %s",
        (after_seq, limit),
    ).fetchall()
    return rows


DELIVERY_SELECT = """
SELECT d.id, d.seq, d.endpoint_id, d.message_id, m.type, m.position, d.status, d.attempts,
       d.next_attempt_at, d.leased_until, d.last_status_code, d.last_error, d.created_at,
       d.updated_at, d.delivered_at,
       coalesce((SELECT json_agg(json_build_object(
           'attempt', a.attempt, 'started_at', a.started_at, 'duration_ms', a.duration_ms,
           'status_code', a.status_code, 'outcome', a.outcome, 'error', a.error,
           'response', a.response_excerpt, 'next_attempt_at', a.next_attempt_at) ORDER BY a.attempt)
         FROM webhook_attempts a WHERE a.delivery_id = d.id), '[]'::json) AS attempt_log
FROM webhook_deliveries d JOIN webhook_messages m ON m.id = d.message_id
"""


def list_deliveries(
    conn: Connection[Any], endpoint_id: UUID, *, status: str | None, before_seq: int | None, limit: int
) -> list[dict[str, Any]]:
    """Newest first."""
    rows: list[dict[str, Any]] = conn.execute(
        DELIVERY_SELECT + " WHERE d.endpoint_id = %(endpoint)s"
        " AND (%(status)s::text IS NULL OR d.status = %(status)s)"
        " AND (%(before)s::bigint IS NULL OR d.seq < %(before)s)"
        " ORDER BY d.seq DESC LIMIT %(limit)s",
        {"endpoint": endpoint_id, "status": status, "before": before_seq, "limit": limit},
    ).fetchall()
    return rows


def get_delivery(conn: Connection[Any], delivery: UUID) -> dict[str, Any] | None:
    row: dict[str, Any] | None = conn.execute(DELIVERY_SELECT + " WHERE d.id = %s", (delivery,)).fetchone()
    return row


def resend(conn: Connection[Any], delivery: UUID, now: datetime) -> str:
    """Make a delivery due now with a fresh schedule. Answers what stood in the way, if anything:
    `not_found`, `in_flight`, `endpoint_disabled`, `endpoint_deleted`; else `ok`."""
    with conn.transaction():
        row: Any = conn.execute(
            "SELECT d.leased_until, e.status AS endpoint_status FROM webhook_deliveries d"
            " JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.id = %s FOR UPDATE OF d",
            (delivery,),
        ).fetchone()
        if row is None:
            return "not_found"
        if row["endpoint_status"] != "enabled":
            return f"endpoint_{row['endpoint_status']}"
        if row["leased_until"] is not None and row["leased_until"] > now:
            return "in_flight"
        conn.execute(
            "UPDATE webhook_deliveries SET status = 'pending', failures = 0, next_attempt_at = %s,"
            " updated_at = %s WHERE id = %s",
            (now, now, delivery),
        )
        return "ok"
