"""Projector checkpoints: per partition, the last applied event, the watermark, and where the
projector stopped if it met an event it cannot apply (see `projections/failures.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import Connection
from psycopg_pool import ConnectionPool

STORE_PARTITION = -1  # a projector fed straight from the event store has one pseudo-partition


@dataclass
class Checkpoint:
    partition: int
    position: int
    watermark: int
    failed_position: int | None = None  # the event the projector stopped at, if it did

    @property
    def passed_failure(self) -> bool:
        """Whether the event it had stopped at is applied now."""
        return self.failed_position is not None and self.position >= self.failed_position


def lock_checkpoint(conn: Connection[Any], name: str, partition: int) -> Checkpoint:
    """Lock (creating if needed) a partition's checkpoint for the current transaction. Whoever
    holds it is the only one applying that partition's events until commit."""
    conn.execute(
        "INSERT INTO projection_partitions (name, partition) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (name, partition),
    )
    row: Any = conn.execute(
        "SELECT position, watermark, failed_position FROM projection_partitions"
        " WHERE name = %s AND partition = %s FOR UPDATE",
        (name, partition),
    ).fetchone()
    failed = row["failed_position"]
    return Checkpoint(partition, int(row["position"]), int(row["watermark"]), failed)


def save_checkpoint(conn: Connection[Any], name: str, checkpoint: Checkpoint) -> bool:
    """Save the checkpoint; a failure it has passed is cleared. Answers whether it cleared one."""
    conn.execute(
        "UPDATE projection_partitions SET position = %(position)s, watermark = %(watermark)s,"
        " updated_at = now(),"
        " failed_position = CASE WHEN failed_position <= %(position)s THEN NULL ELSE failed_position END,"
        " failed_event_type = CASE WHEN failed_position <= %(position)s THEN NULL ELSE failed_event_type END,"
        " failed_error = CASE WHEN failed_position <= %(position)s THEN NULL ELSE failed_error END,"
        " failed_at = CASE WHEN failed_position <= %(position)s THEN NULL ELSE failed_at END,"
        " failed_attempts = CASE WHEN failed_position <= %(position)s THEN 0 ELSE failed_attempts END"
        " WHERE name = %(name)s AND partition = %(partition)s",
        {
            "position": checkpoint.position,
            "watermark": checkpoint.watermark,
            "name": name,
            "partition": checkpoint.partition,
        },
    )
    return checkpoint.passed_failure


def lock_checkpoints(
    conn: Connection[Any], name: str, partitions: list[int], *, relax: bool = False
) -> list[Checkpoint]:
    """`lock_checkpoint` for several partitions in one round trip, locked in partition order
    (two processes never wait on each other in a cycle); answered in partition order. `relax`:
    `relax_commit` in the same round trip."""
    ordered = sorted(partitions)
    with conn.pipeline():
        if relax:
            relax_commit(conn)
        conn.execute(
            "INSERT INTO projection_partitions (name, partition) SELECT %s, unnest(%s::int[])"
            " ORDER BY 2 ON CONFLICT DO NOTHING",
            (name, ordered),
        )
        cur = conn.execute(
            "SELECT partition, position, watermark, failed_position FROM projection_partitions"
            " WHERE name = %s AND partition = ANY(%s) ORDER BY partition FOR UPDATE",
            (name, ordered),
        )
    rows: list[Any] = cur.fetchall()
    return [
        Checkpoint(r["partition"], int(r["position"]), int(r["watermark"]), r["failed_position"])
        for r in rows
    ]


def save_checkpoints(conn: Connection[Any], name: str, checkpoints: list[Checkpoint]) -> list[Checkpoint]:
    """`save_checkpoint` for several partitions in one statement; answers those that passed a
    failure."""
    conn.execute(
        "UPDATE projection_partitions p SET position = a.pos, watermark = a.watermark,"
        " updated_at = now(),"
        " failed_position = CASE WHEN p.failed_position <= a.pos THEN NULL ELSE p.failed_position END,"
        " failed_event_type = CASE WHEN p.failed_position <= a.pos THEN NULL ELSE p.failed_event_type END,"
        " failed_error = CASE WHEN p.failed_position <= a.pos THEN NULL ELSE p.failed_error END,"
        " failed_at = CASE WHEN p.failed_position <= a.pos THEN NULL ELSE p.failed_at END,"
        " failed_attempts = CASE WHEN p.failed_position <= a.pos THEN 0 ELSE p.failed_attempts END"
        " FROM unnest(%s::int[], %s::bigint[], %s::bigint[]) AS a(partition, pos, watermark)"
        " WHERE p.name = %s AND p.partition = a.partition",
        (
            [c.partition for c in checkpoints],
            [c.position for c in checkpoints],
            [c.watermark for c in checkpoints],
            name,
        ),
    )
    return [c for c in checkpoints if c.passed_failure]


def relax_commit(conn: Connection[Any]) -> None:
    """This transaction commits without waiting for its WAL to reach disk. Safe for read models
    and their checkpoints: they commit together or not at all, and the most a PostgreSQL crash
    can undo is the last fraction of a second of both, which the projector applies again from
    its checkpoint (the events are durable in the store). Any later durable commit flushes it
    too, so nothing durable can depend on a change that was lost. `ledger replay` does the same.
    It saves a WAL flush (milliseconds) on every batch of a live projector."""
    conn.execute("SET LOCAL synchronous_commit = off")


class FeedConflict(Exception):
    """A projector's read models were built from another feed and cannot be taken over safely."""


def _rows(conn: Connection[Any], name: str) -> list[Any]:
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('projection:' || %s))", (name,))
    rows: list[Any] = conn.execute(
        "SELECT partition, position, watermark FROM projection_partitions WHERE name = %s FOR UPDATE", (name,)
    ).fetchall()
    return rows


def adopt_kafka_feed(pool: ConnectionPool, name: str, partitions: list[int]) -> None:
    """Give every Kafka partition a checkpoint row, so the lowest watermark covers all of them.
    Read models that were fed from the store up to W take over as "every partition applied up
    to W": events at or below W are then skipped, later ones come from Kafka (or the store)."""
    with pool.connection() as conn, conn.transaction():
        rows = _rows(conn, name)
        store = next((r for r in rows if r["partition"] == STORE_PARTITION), None)
        start = int(store["watermark"]) if store else 0
        for partition in partitions:
            conn.execute(
                "INSERT INTO projection_partitions (name, partition, position, watermark)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (name, partition, start, start),
            )
        if store is not None:
            conn.execute(
                "DELETE FROM projection_partitions WHERE name = %s AND partition = %s",
                (name, STORE_PARTITION),
            )


def adopt_store_feed(pool: ConnectionPool, name: str) -> None:
    """Take over read models fed from Kafka, for a projector that reads the store directly. Safe
    only when every partition stopped at or below the lowest watermark (it had caught up): else
    events beyond it would be applied twice, and `ledger replay` must rebuild them first."""
    with pool.connection() as conn, conn.transaction():
        rows = [r for r in _rows(conn, name) if r["partition"] != STORE_PARTITION]
        if not rows:
            return
        low = min(int(r["watermark"]) for r in rows)
        if max(int(r["position"]) for r in rows) > low:
            raise FeedConflict(
                f"projector {name} was fed from Kafka and some partitions are ahead of position {low}:"
                " reading the store from there would apply events twice. Run `ledger replay` first,"
                " or set LEDGER_KAFKA_BOOTSTRAP_SERVERS to keep consuming Kafka."
            )
        conn.execute("DELETE FROM projection_partitions WHERE name = %s", (name,))
        conn.execute(
            "INSERT INTO projection_partitions (name, partition, position, watermark)"
            " VALUES (%s, %s, %s, %s)",
            (name, STORE_PARTITION, low, low),
        )


def applied_position(pool: ConnectionPool, name: str) -> int:
    """The position up to which the projector has applied every event (0 if it never ran)."""
    with pool.connection() as conn:
        row: Any = conn.execute(
            "SELECT min(watermark) AS applied FROM projection_partitions WHERE name = %s", (name,)
        ).fetchone()
    return int(row["applied"] or 0)


def projector_names(pool: ConnectionPool) -> list[str]:
    with pool.connection() as conn:
        rows: Any = conn.execute("SELECT DISTINCT name FROM projection_partitions ORDER BY name").fetchall()
    return [r["name"] for r in rows]
