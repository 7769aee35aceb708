"""A projector that meets an event it cannot apply stops there, loudly, instead of failing the
same batch again and again in a log nobody reads.

Failures are of two kinds. A passing one (the database or the broker unreachable, a lock
timeout, a deadlock) is retried as it was. Any other error while applying events (a handler that
raises on the event's payload, a value the read model's columns refuse) is the event's: the
batch is then applied again one event at a time, each with its checkpoint, so that everything
before the culprit is applied and the culprit is known. The projector records where it stopped
on the partition's checkpoint row (`failed_position`, `failed_event_type`, `failed_error`), which
`/readyz` (503) and `GET /v1/ops/projections` show, and a critical `projection_failed` alert is
raised once through the ledger. The projector tries that event again now and then (an operator
may fix what it needs) and at every restart (after a fix of the code); the first time it
applies, the failure is cleared and the alert resolved."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from eventsourcing.persistence import PersistenceError
from kafka.errors import KafkaError
from psycopg_pool import ConnectionPool, PoolTimeout

from application import commands as c
from domain import ids
from domain.errors import DomainError

if TYPE_CHECKING:
    from application.ledger import Ledger

log = logging.getLogger(__name__)

ALERT_TYPE = "projection_failed"
ALERT_SEVERITY = "critical"
MAX_ERROR_CHARS = 2000

#: Errors that say nothing about the event being applied: retried as they are.
PASSING_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,  # connection lost, lock timeout, deadlock, serialization, shutdown
    psycopg.InterfaceError,
    PoolTimeout,
    KafkaError,
    OSError,
)


def is_passing(error: BaseException) -> bool:
    return isinstance(error, PASSING_ERRORS)


def describe_error(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".strip()
    return text[:MAX_ERROR_CHARS]


@dataclass(frozen=True)
class ProjectionFailure:
    name: str
    partition: int
    position: int
    event_type: str
    error: str

    def __str__(self) -> str:
        return (
            f"projector {self.name} stopped at position {self.position} ({self.event_type},"
            f" partition {self.partition}): {self.error}"
        )


class ProjectionFailed(Exception):
    """A projector stopped at an event it cannot apply."""

    def __init__(self, failure: ProjectionFailure) -> None:
        super().__init__(str(failure))
        self.failure = failure


def record_failure(pool: ConnectionPool, failure: ProjectionFailure) -> bool:
    """Record where the projector stopped; answers whether it is news (another event, or none
    recorded before), so that it is logged and alerted once."""
    with pool.connection() as conn, conn.transaction():
        conn.execute(
            "INSERT INTO projection_partitions (name, partition) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (failure.name, failure.partition),
        )
        row: Any = conn.execute(
            "SELECT failed_position FROM projection_partitions WHERE name = %s AND partition = %s FOR UPDATE",
            (failure.name, failure.partition),
        ).fetchone()
        again = row["failed_position"] == failure.position
        conn.execute(
            "UPDATE projection_partitions SET failed_position = %(position)s,"
            " failed_event_type = %(type)s, failed_error = %(error)s,"
            " failed_at = CASE WHEN %(again)s THEN failed_at ELSE now() END,"
            " failed_attempts = CASE WHEN %(again)s THEN failed_attempts + 1 ELSE 1 END"
            " WHERE name = %(name)s AND partition = %(partition)s",
            {
                "position": failure.position,
                "type": failure.event_type,
                "error": failure.error,
                "again": again,
                "name": failure.name,
                "partition": failure.partition,
            },
        )
    return not again


def report_stop(
    pool: ConnectionPool,
    failure: ProjectionFailure,
    on_failure: Callable[[ProjectionFailure], None] | None,
) -> None:
    """Record the stop; log it once (later attempts at the same event are only counted)."""
    if record_failure(pool, failure):
        log.error(
            "%s. It tries that event again now and then, and at every restart; the read models"
            " stay as they are until then (GET /v1/ops/projections, /readyz)",
            failure,
        )
    if on_failure is not None:
        on_failure(failure)


def report_resume(
    name: str, partition: int, position: int, on_resume: Callable[[str, int, int], None] | None
) -> None:
    log.warning("projector %s applied position %d, where it had stopped, and goes on", name, position)
    if on_resume is not None:
        on_resume(name, partition, position)


def stopped_partitions(pool: ConnectionPool, name: str) -> int:
    with pool.connection() as conn:
        row: Any = conn.execute(
            "SELECT count(*) AS n FROM projection_partitions"
            " WHERE name = %s AND failed_position IS NOT NULL AND failed_position > position",
            (name,),
        ).fetchone()
    return int(row["n"])


class ProjectionAlerts:
    """The `projection_failed` alert (critical, one per projector), raised and resolved through
    the ledger's own use cases."""

    def __init__(self, ledger: Ledger, pool: ConnectionPool) -> None:
        self.ledger = ledger
        self.pool = pool

    def failed(self, failure: ProjectionFailure) -> None:
        """Raise the alert. Called at each attempt: the idempotency key (the projector, the
        partition, the position) records it once."""
        cmd = c.RaiseAlert(
            alert_id=ids.alert_id(ALERT_TYPE, subject(failure.name)),
            alert_type=ALERT_TYPE,
            severity=ALERT_SEVERITY,
            subject=subject(failure.name),
            message=str(failure),
            customer_id=None,
        )
        ctx = self._ctx(failure.name, f"{ALERT_TYPE}:{failure.name}:{failure.partition}:{failure.position}")
        try:
            self.ledger.raise_alert(cmd, ctx)
        except (DomainError, PersistenceError, psycopg.Error):
            # The stop is recorded and shown whatever happens here; the next attempt raises it.
            log.warning(
                "could not raise the %s alert for projector %s", ALERT_TYPE, failure.name, exc_info=True
            )

    def resumed(self, name: str, partition: int, position: int) -> None:
        """Resolve the alert once no partition of the projector is stopped any more."""
        if stopped_partitions(self.pool, name):
            return
        alert_id = ids.alert_id(ALERT_TYPE, subject(name))
        note = f"projector {name} applied position {position} and goes on"
        ctx = self._ctx(name, f"projection_resumed:{name}:{partition}:{position}")
        try:
            self.ledger.resolve_alert(c.ResolveAlert(alert_id, note), ctx)
        except DomainError:
            pass  # never raised, or resolved already by an operator
        except (PersistenceError, psycopg.Error):
            log.warning("could not resolve the %s alert for projector %s", ALERT_TYPE, name, exc_info=True)

    def _ctx(self, name: str, key: str) -> c.CommandContext:
        return c.CommandContext(
            occurred_at=self.ledger.now(), source="system", actor=f"projector:{name}", idempotency_key=key
        )


def subject(name: str) -> str:
    return f"projector:{name}"
