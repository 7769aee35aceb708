"""Feeds stored events, in position order, to a projector; the rows it changes and its checkpoint
commit in one transaction, so a crash at any point neither loses nor doubles an event.

Several processes may run the same projector: the checkpoint row is locked for the batch
(`FOR UPDATE SKIP LOCKED`), so exactly one of them advances it at a time."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from psycopg import Cursor
from psycopg_pool import ConnectionPool

from projections.core import StoredEventRow, apply_event

log = logging.getLogger(__name__)

EVENTS_TABLE = "ledger_events"
Apply = Callable[[Cursor[Any], StoredEventRow], None]

SELECT_BATCH = (
    f"SELECT notification_id AS position, originator_id AS stream_id, originator_version AS version,"
    f" event_type AS type, occurred_at, recorded_at, customer_id,"
    f" convert_from(state, 'UTF8')::jsonb AS payload"
    f" FROM {EVENTS_TABLE} WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
)


def checkpoint(pool: ConnectionPool, name: str) -> int:
    with pool.connection() as conn:
        row = conn.execute("SELECT position FROM projection_checkpoints WHERE name = %s", (name,)).fetchone()
        return int(row["position"]) if row else 0  # type: ignore[call-overload]


def head_position(pool: ConnectionPool) -> int:
    with pool.connection() as conn:
        row = conn.execute(f"SELECT coalesce(max(notification_id), 0) AS head FROM {EVENTS_TABLE}").fetchone()
        return int(row["head"]) if row else 0  # type: ignore[call-overload]


class StoreProjector:
    def __init__(
        self,
        pool: ConnectionPool,
        name: str = "core",
        apply: Apply = apply_event,
        batch_size: int = 1000,
    ) -> None:
        self.pool = pool
        self.name = name
        self.apply = apply
        self.batch_size = batch_size
        with pool.connection() as conn:
            conn.execute(
                "INSERT INTO projection_checkpoints (name, position) VALUES (%s, 0)"
                " ON CONFLICT (name) DO NOTHING",
                (name,),
            )
            conn.commit()

    def run_once(self) -> int:
        """Apply one batch; returns how many events it applied (0 if none or another process holds it)."""
        with self.pool.connection() as conn, conn.transaction():
            row: Any = conn.execute(
                "SELECT position FROM projection_checkpoints WHERE name = %s FOR UPDATE SKIP LOCKED",
                (self.name,),
            ).fetchone()
            if row is None:
                return 0
            rows: list[Any] = conn.execute(SELECT_BATCH, (row["position"], self.batch_size)).fetchall()
            if not rows:
                return 0
            with conn.cursor() as cur:
                for r in rows:
                    self.apply(cur, StoredEventRow(**r))
            conn.execute(
                "UPDATE projection_checkpoints SET position = %s, updated_at = now() WHERE name = %s",
                (rows[-1]["position"], self.name),
            )
            return len(rows)

    def catch_up(self, progress: Callable[[int], None] | None = None) -> int:
        total = 0
        while applied := self.run_once():
            total += applied
            if progress:
                progress(applied)
        return total


class BackgroundProjection:
    """Runs a StoreProjector in a daemon thread; `wake()` shortens the wait after a local write."""

    def __init__(self, projector: StoreProjector, poll_seconds: float) -> None:
        self.projector = projector
        self.poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"projector-{projector.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                applied = self.projector.run_once()
            except Exception:
                log.exception("projector %s failed; retrying", self.projector.name)
                applied = 0
                time.sleep(1)
            if applied == 0:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()


def wait_for_position(pool: ConnectionPool, name: str, position: int, timeout: float) -> bool:
    """Read-your-writes: wait (bounded) until the projector has applied `position`."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        if checkpoint(pool, name) >= position:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 0.05)
