"""Feeds stored events to a projector straight from the event store, in position order (used by
`ledger replay`, by a single-process deployment, and to fill gaps). The rows a batch changes and
its checkpoint commit in one transaction, so a crash at any point neither loses nor doubles an
event. Several processes may run it: the checkpoint row is locked for the batch. An event it
cannot apply stops it there (see `projections/failures.py`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from psycopg import Connection
from psycopg_pool import ConnectionPool

from infra.background import BackgroundLoop
from projections.checkpoints import (
    STORE_PARTITION,
    Checkpoint,
    adopt_store_feed,
    applied_position,
    lock_checkpoint,
    save_checkpoint,
)
from projections.core import Executor, StoredEventRow
from projections.failures import (
    ProjectionFailed,
    ProjectionFailure,
    describe_error,
    is_passing,
    report_resume,
    report_stop,
)
from projections.pipeline_sink import PipelineSink
from projections.projection import settle_batch
from projections.set_sink import SetSink

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


def apply_all(conn: Connection[Any], events: Sequence[StoredEventRow], apply: Apply) -> None:
    """Apply events in order inside the caller's transaction: one event's statements pipelined
    as prepared statements (see PipelineSink), a batch's set-based (see SetSink)."""
    if len(events) == 1:
        with PipelineSink(conn, transaction=False) as sink:
            apply(sink, events[0])
    else:
        collected = SetSink()
        for event in events:
            collected.begin(event.customer_id or event.stream_id)
            apply(collected, event)
        collected.flush(conn)
    settle_batch(conn, apply, events)


def apply_one(
    pool: ConnectionPool,
    name: str,
    partition: int,
    event: StoredEventRow,
    apply: Apply,
    settle: Callable[[Checkpoint], None],
) -> Checkpoint | None:
    """Apply one event with its checkpoint, in a transaction of its own (how a batch that failed
    is gone through, to apply what can be and find the event that cannot). `settle` completes
    the checkpoint before it is saved. Answers the saved checkpoint, None if it was applied before."""
    with pool.connection() as conn, conn.transaction():
        checkpoint = lock_checkpoint(conn, name, partition)
        if event.position <= checkpoint.position:
            return None
        apply_all(conn, [event], apply)
        checkpoint.position = event.position
        settle(checkpoint)
        save_checkpoint(conn, name, checkpoint)
        return checkpoint


OnFailure = Callable[[ProjectionFailure], None]
OnResume = Callable[[str, int, int], None]


class StoreProjector:
    def __init__(
        self,
        pool: ConnectionPool,
        name: str = "core",
        apply: Apply | None = None,
        batch_size: int = 2000,
        *,
        on_failure: OnFailure | None = None,
        on_resume: OnResume | None = None,
    ) -> None:
        from projections.registry import projector

        self.pool = pool
        self.name = name
        self.apply = apply or projector(name)
        self.batch_size = batch_size
        self.on_failure = on_failure
        self.on_resume = on_resume
        adopt_store_feed(pool, name)

    def run_once(self) -> int:
        """Apply one batch; answers how many events it applied. Raises `ProjectionFailed` when
        it meets an event it cannot apply (after applying every event before it)."""
        try:
            return self._apply_batch()
        except Exception as error:
            if is_passing(error):
                raise
            log.warning(
                "projector %s: a batch failed (%s); going through it one event at a time",
                self.name,
                describe_error(error),
            )
            return self._apply_singly()

    def _apply_batch(self) -> int:
        with self.pool.connection() as conn, conn.transaction():
            checkpoint = lock_checkpoint(conn, self.name, STORE_PARTITION)
            events = read_after(conn, checkpoint.position, self.batch_size)
            if not events:
                return 0
            apply_all(conn, events, self.apply)
            checkpoint.position = checkpoint.watermark = events[-1].position
            resumed = save_checkpoint(conn, self.name, checkpoint)
        if resumed:
            report_resume(self.name, STORE_PARTITION, checkpoint.position, self.on_resume)
        return len(events)

    def _apply_singly(self) -> int:
        with self.pool.connection() as conn:
            position = lock_checkpoint(conn, self.name, STORE_PARTITION).position
            events = read_after(conn, position, self.batch_size)
        applied = 0
        for event in events:
            try:
                saved = apply_one(self.pool, self.name, STORE_PARTITION, event, self.apply, _follow_position)
            except Exception as error:
                if is_passing(error):
                    raise
                failure = ProjectionFailure(
                    self.name, STORE_PARTITION, event.position, event.type, describe_error(error)
                )
                report_stop(self.pool, failure, self.on_failure)
                raise ProjectionFailed(failure) from error
            if saved is not None:
                applied += 1
                if saved.passed_failure:
                    report_resume(self.name, STORE_PARTITION, saved.position, self.on_resume)
        return applied

    def catch_up(self, progress: Callable[[int], None] | None = None) -> int:
        total = 0
        while applied := self.run_once():
            total += applied
            if progress:
                progress(applied)
        return total


def _follow_position(checkpoint: Checkpoint) -> None:
    """Fed from the store, a projector has applied everything up to its position."""
    checkpoint.watermark = checkpoint.position


class BackgroundProjection(BackgroundLoop):
    """A store-fed projector in a daemon thread; `wake()` after a local write. Stopped at an
    event it cannot apply, it tries again after a pause that doubles each time (see
    `projections/failures.py`)."""

    RETRY_FIRST_SECONDS = 5.0
    RETRY_MAX_SECONDS = 300.0

    def __init__(self, projector: StoreProjector, poll_seconds: float) -> None:
        self.projector = projector
        self.stopped: ProjectionFailed | None = None
        self._retry_at = 0.0
        self._retry_delay = self.RETRY_FIRST_SECONDS
        super().__init__(
            f"projector-{projector.name}",
            self._step,
            poll_seconds=poll_seconds,
            max_idle_seconds=poll_seconds,
        )

    def _step(self) -> int:
        if self.stopped is not None and time.monotonic() < self._retry_at:
            return 0
        try:
            applied = self.projector.run_once()
        except ProjectionFailed as failed:
            self.stopped = failed
            self._retry_at = time.monotonic() + self._retry_delay
            self._retry_delay = min(self._retry_delay * 2, self.RETRY_MAX_SECONDS)
            return 0
        self.stopped = None
        self._retry_delay = self.RETRY_FIRST_SECONDS
        return applied


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
