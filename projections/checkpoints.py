"""Projector checkpoints: per partition, the last applied event and the watermark."""

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


def lock_checkpoint(conn: Connection[Any], name: str, partition: int) -> Checkpoint:
    """Lock (creating if needed) a partition's checkpoint for the current transaction. Whoever
    holds it is the only one applying that partition's events until commit."""
    conn.execute(
        "INSERT INTO projection_partitions (name, partition) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (name, partition),
    )
    row: Any = conn.execute(
        "SELECT position, watermark FROM projection_partitions WHERE name = %s AND partition = %s FOR UPDATE",
        (name, partition),
    ).fetchone()
    return Checkpoint(partition, int(row["position"]), int(row["watermark"]))


def save_checkpoint(conn: Connection[Any], name: str, checkpoint: Checkpoint) -> None:
    conn.execute(
        "UPDATE projection_partitions SET position = %s, watermark = %s, updated_at = now()"
        " WHERE name = %s AND partition = %s",
        (checkpoint.position, checkpoint.watermark, name, checkpoint.partition),
    )


def ensure_partitions(pool: ConnectionPool, name: str, partitions: list[int]) -> None:
    """Make sure every partition has a row, so the lowest watermark accounts for all of them."""
    with pool.connection() as conn:
        for partition in partitions:
            conn.execute(
                "INSERT INTO projection_partitions (name, partition) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (name, partition),
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
