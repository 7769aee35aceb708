"""Feeds stored events to a projector straight from the event store, in position order (used by
`ledger replay`, by a single-process deployment, and to fill gaps). The rows a batch changes and
its checkpoint commit in one transaction, so a crash at any point neither loses nor doubles an
event. Several processes may run it: the checkpoint row is locked for the batch."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from psycopg import Connection
from psycopg_pool import ConnectionPool

from infra.background import BackgroundLoop
from projections.checkpoints import (
    STORE_PARTITION,
    adopt_store_feed,
    applied_position,
    lock_checkpoint,
    save_checkpoint,
)
from projections.core import Executor, StoredEventRow
from projections.pipeline_sink import PipelineSink
from projections.projection import settle_batch

log = logging.getLogger(__name__)

EVENTS_TABLE = "ledger_events"
Apply = Callable[[Executor, StoredEventRow], None]

# The payload is fetched as the stored bytes and parsed here (orjson): cheaper than having the
# server convert it to jsonb and the driver parse that again.
EVENT_COLUMNS = (
    "notification_id AS position, originator_id AS stream_id, originator_version AS version,"
    " event_type AS type, occurred_at, recorded_at, customer_id, state"
)
SELECT_AFTER = (
    f"SELECT {EVENT_COLUMNS} FROM {EVENTS_TABLE} WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
)
SELECT_RANGE = (
    f"SELECT {EVENT_COLUMNS} FROM {EVENTS_TABLE} WHERE notification_id > %s AND notification_id <= %s"
    " ORDER BY notification_id"
)


def head_position(pool: ConnectionPool) -> int:
    with pool.connection() as conn:
        row: Any = conn.execute(
            f"SELECT coalesce(max(notification_id), 0) AS head FROM {EVENTS_TABLE}"
        ).fetchone()
        return int(row["head"])


def _row(r: dict[str, Any]) -> StoredEventRow:
    return StoredEventRow(
        position=r["position"],
        stream_id=r["stream_id"],
        version=r["version"],
        type=r["type"],
        occurred_at=r["occurred_at"],
        recorded_at=r["recorded_at"],
        customer_id=r["customer_id"],
        payload=orjson.loads(r["state"]),
    )


def read_after(conn: Connection[Any], after: int, limit: int) -> list[StoredEventRow]:
    rows: list[dict[str, Any]] = conn.execute(SELECT_AFTER, (after, limit)).fetchall()
    return [_row(r) for r in rows]


def read_range(conn: Connection[Any], after: int, up_to: int) -> list[StoredEventRow]:
    rows: list[dict[str, Any]] = conn.execute(SELECT_RANGE, (after, up_to)).fetchall()
    return [_row(r) for r in rows]


def apply_all(conn: Connection[Any], events: list[StoredEventRow], apply: Apply) -> None:
    """Apply events in order inside the caller's transaction, pipelined as prepared statements:
    sent without waiting for each answer (see PipelineSink)."""
    with PipelineSink(conn, transaction=False) as sink:
        for event in events:
            apply(sink, event)
    settle_batch(conn, apply, events)


class StoreProjector:
    def __init__(
        self, pool: ConnectionPool, name: str = "core", apply: Apply | None = None, batch_size: int = 2000
    ) -> None:
        from projections.registry import projector

        self.pool = pool
        self.name = name
        self.apply = apply or projector(name)
        self.batch_size = batch_size
        adopt_store_feed(pool, name)

    def run_once(self) -> int:
        """Apply one batch; answers how many events it applied."""
        with self.pool.connection() as conn, conn.transaction():
            checkpoint = lock_checkpoint(conn, self.name, STORE_PARTITION)
            events = read_after(conn, checkpoint.position, self.batch_size)
            if not events:
                return 0
            apply_all(conn, events, self.apply)
            checkpoint.position = checkpoint.watermark = events[-1].position
            save_checkpoint(conn, self.name, checkpoint)
            return len(events)

    def catch_up(self, progress: Callable[[int], None] | None = None) -> int:
        total = 0
        while applied := self.run_once():
            total += applied
            if progress:
                progress(applied)
        return total


class BackgroundProjection(BackgroundLoop):
    """A store-fed projector in a daemon thread; `wake()` after a local write."""

    def __init__(self, projector: StoreProjector, poll_seconds: float) -> None:
        self.projector = projector
        super().__init__(
            f"projector-{projector.name}",
            projector.run_once,
            poll_seconds=poll_seconds,
            max_idle_seconds=poll_seconds,
        )


def wait_for_position(pool: ConnectionPool, name: str, position: int, timeout: float) -> bool:
    """Read-your-writes: wait (bounded) until the projector has applied `position`."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        if applied_position(pool, name) >= position:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 0.05)
