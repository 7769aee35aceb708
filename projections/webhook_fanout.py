"""The webhook fan-out: follows the log and records, for each event some endpoint subscribed to,
a message and one delivery per endpoint (`infra/webhook_store.py`).

It reads the event store itself, by position (positions follow commit order, so it never passes
over a gap filled later), not Kafka nor the read models: deliveries never wait for a projector.
It keeps the endpoints as their own events left them (`webhook_endpoints`), applied in order
with everything else, so an event reaches exactly the endpoints subscribed when it was recorded:
not one deleted before it, not one created after it. What a batch records and its checkpoint
(the `webhooks` row of the projector checkpoints, so `/v1/ops/projections` shows its lag)
commit in one transaction: a crash loses nothing and a batch done again creates nothing twice.
Several processes may run it: the checkpoint row is locked for the batch.

On its first run it starts just before the first webhook endpoint event (or at the head of the
log when there is none): no endpoint subscribed to anything earlier."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from psycopg import Connection
from psycopg_pool import ConnectionPool

from application.ledger import Ledger
from application.webhook_messages import message_body
from application.webhooks import wall_clock
from domain.webhook_types import subscribes, webhook_type_of
from infra.background import BackgroundLoop
from infra.webhook_store import add_message, cancel_pending, message_id
from projections.checkpoints import STORE_PARTITION, lock_checkpoint, save_checkpoint

log = logging.getLogger(__name__)

NAME = "webhooks"
BATCH = 500
ENDPOINT_EVENTS = "WebhookEndpoint."

EVENTS_AFTER = (
    "SELECT notification_id AS position, originator_id AS stream_id, originator_version AS version,"
    " event_type AS type, occurred_at, state, xmin::text AS tx"
    " FROM ledger_events WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
)
# The stream's last version written by the same transaction: the state the write left. Rows of
# one append share the inserting transaction's id (xmin); the append function runs no
# subtransaction, so this holds for every write.
VERSION_AFTER_WRITE = (
    "SELECT max(originator_version) AS version FROM ledger_events WHERE originator_id = %s AND xmin = %s::xid"
)
STARTING_POINT = (
    "SELECT coalesce((SELECT min(notification_id) - 1 FROM ledger_events"
    " WHERE event_type LIKE 'WebhookEndpoint.%%'), (SELECT max(notification_id) FROM ledger_events), 0)"
    " AS start"
)


class WebhookFanout:
    def __init__(
        self,
        pool: ConnectionPool,
        ledger: Ledger,
        *,
        clock: Callable[[], datetime] = wall_clock,
        batch: int = BATCH,
        on_fanned_out: Callable[[], None] | None = None,
    ) -> None:
        self.pool = pool
        self.ledger = ledger
        self.clock = clock
        self.batch = batch
        self.on_fanned_out = on_fanned_out
        self._started = False

    def _start(self) -> None:
        with self.pool.connection() as conn:
            found = conn.execute(
                "SELECT 1 FROM projection_partitions WHERE name = %s AND partition = %s",
                (NAME, STORE_PARTITION),
            ).fetchone()
            if found is None:
                row: Any = conn.execute(STARTING_POINT).fetchone()
                start = int(row["start"])
                conn.execute(
                    "INSERT INTO projection_partitions (name, partition, position, watermark)"
                    " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (NAME, STORE_PARTITION, start, start),
                )
        self._started = True

    def run_once(self) -> int:
        """Fan out the next batch of events; answers how many were read."""
        if not self._started:
            self._start()
        deliveries = 0
        with self.pool.connection() as conn, conn.transaction():
            checkpoint = lock_checkpoint(conn, NAME, STORE_PARTITION)
            events: list[Any] = conn.execute(EVENTS_AFTER, (checkpoint.position, self.batch)).fetchall()
            if not events:
                return 0
            now = self.clock()
            endpoints: list[tuple[UUID, list[str]]] | None = None
            for event in events:
                if event["type"].startswith(ENDPOINT_EVENTS):
                    apply_endpoint_event(conn, event, now)
                    endpoints = None
                    continue
                webhook_type = webhook_type_of(event["type"])
                if webhook_type is None:
                    continue
                if endpoints is None:
                    endpoints = enabled_endpoints(conn)
                targets = [e for e, types in endpoints if subscribes(types, webhook_type)]
                if targets:
                    self._add(conn, event, webhook_type, targets, now)
                    deliveries += len(targets)
            checkpoint.position = checkpoint.watermark = int(events[-1]["position"])
            save_checkpoint(conn, NAME, checkpoint)
        if deliveries and self.on_fanned_out is not None:
            self.on_fanned_out()
        return len(events)

    def catch_up(self) -> int:
        total = 0
        while read := self.run_once():
            total += read
        return total

    def _add(
        self,
        conn: Connection[Any],
        event: dict[str, Any],
        webhook_type: str,
        targets: list[UUID],
        now: datetime,
    ) -> None:
        row: Any = conn.execute(VERSION_AFTER_WRITE, (event["stream_id"], event["tx"])).fetchone()
        body = message_body(
            self.ledger,
            webhook_type=webhook_type,
            event_type=event["type"],
            stream_id=event["stream_id"],
            version_after_write=int(row["version"] or event["version"]),
            position=int(event["position"]),
            occurred_at=event["occurred_at"],
            payload=lambda: dict(orjson.loads(event["state"])),
        )
        add_message(
            conn,
            msg_id=message_id(event["stream_id"], int(event["version"])),
            position=int(event["position"]),
            webhook_type=webhook_type,
            body=body,
            endpoint_ids=targets,
            now=now,
        )


def enabled_endpoints(conn: Connection[Any]) -> list[tuple[UUID, list[str]]]:
    rows: list[dict[str, Any]] = conn.execute(
        "SELECT id, event_types FROM webhook_endpoints WHERE status = 'enabled'"
    ).fetchall()
    return [(r["id"], list(r["event_types"])) for r in rows]


def apply_endpoint_event(conn: Connection[Any], event: dict[str, Any], now: datetime) -> None:
    """An endpoint's own event, applied to `webhook_endpoints` (each idempotent)."""
    p: dict[str, Any] = orjson.loads(event["state"])
    endpoint_id, kind, position = event["stream_id"], event["type"].split(".", 1)[1], int(event["position"])
    if kind == "Created":
        conn.execute(
            "INSERT INTO webhook_endpoints (id, seq, url, event_types, description, status, secret_id,"
            " secret_fingerprint, created_at, updated_at, position)"
            " VALUES (%s, %s, %s, %s, %s, 'enabled', %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
            (
                endpoint_id,
                position,
                p["url"],
                p["event_types"],
                p["description"],
                p["secret_id"],
                p["secret_fingerprint"],
                event["occurred_at"],
                event["occurred_at"],
                position,
            ),
        )
    elif kind == "SecretRotated":
        conn.execute(
            "UPDATE webhook_endpoints SET secret_id = %s, secret_fingerprint = %s, previous_secret_id = %s,"
            " previous_secret_valid_until = %s, updated_at = %s, position = %s WHERE id = %s",
            (
                p["secret_id"],
                p["secret_fingerprint"],
                p["previous_secret_id"],
                p["previous_valid_until"],
                event["occurred_at"],
                position,
                endpoint_id,
            ),
        )
        # Only the new secret and the one it replaces may still sign: older ones are destroyed.
        conn.execute(
            "DELETE FROM webhook_secrets WHERE endpoint_id = %s AND id <> ALL(%s::uuid[])",
            (endpoint_id, [p["secret_id"], p["previous_secret_id"]]),
        )
    elif kind == "Disabled":
        conn.execute(
            "UPDATE webhook_endpoints SET status = 'disabled', disabled_at = %s, disabled_reason = %s,"
            " updated_at = %s, position = %s WHERE id = %s AND status <> 'deleted'",
            (event["occurred_at"], p["reason"], event["occurred_at"], position, endpoint_id),
        )
        cancel_pending(conn, endpoint_id, f"endpoint disabled: {p['reason']}", now)
    elif kind == "Deleted":
        conn.execute(
            "UPDATE webhook_endpoints SET status = 'deleted', deleted_at = %s, updated_at = %s, position = %s"
            " WHERE id = %s",
            (event["occurred_at"], event["occurred_at"], position, endpoint_id),
        )
        cancel_pending(conn, endpoint_id, "endpoint deleted", now)
        conn.execute("DELETE FROM webhook_secrets WHERE endpoint_id = %s", (endpoint_id,))
    else:
        log.warning("webhook fan-out: unknown endpoint event %s at %d", event["type"], position)


class BackgroundFanout(BackgroundLoop):
    def __init__(self, fanout: WebhookFanout, poll_seconds: float) -> None:
        self.fanout = fanout
        super().__init__("webhook-fanout", fanout.run_once, poll_seconds=poll_seconds, max_idle_seconds=0.25)
