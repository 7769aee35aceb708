"""`ledger replay`: rebuild a projector's read models straight from the event store (no Kafka)
into fresh tables, then swap them in atomically with the projector's checkpoints.

The rebuild runs in a private schema put first on the search path, so the very same handlers
write into the new tables while the old ones keep answering queries. Events appended while the
rebuild runs are picked up afterwards by the live projector (its checkpoint moves to the rebuilt
position, and a gap is filled from the store)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from infra import kafka as k
from projections.checkpoints import STORE_PARTITION
from projections.core import apply_event
from projections.runner import Apply, apply_all, read_after
from projections.schema import CORE_TABLES, create_read_models

BATCH = 5000


def replay(
    conninfo: str,
    schema: str,
    name: str = "core",
    *,
    apply: Apply = apply_event,
    tables: tuple[str, ...] = CORE_TABLES,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Rebuild and swap; answers the position the rebuilt read models are at."""
    scratch = f"{schema}_replay_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(conninfo, row_factory=dict_row) as conn:
        conn.execute(
            sql.SQL("SET search_path TO {}, {}").format(sql.Identifier(schema), sql.Identifier(schema))
        )
        head_row: Any = conn.execute(
            "SELECT coalesce(max(notification_id), 0) AS head FROM ledger_events"
        ).fetchone()
        head = int(head_row["head"])
        partitions = _partition_count(conn)
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(scratch)))
        conn.execute(
            sql.SQL("SET search_path TO {}, {}").format(sql.Identifier(scratch), sql.Identifier(schema))
        )
        create_read_models(conn)
        conn.commit()
        try:
            last_in_partition = _rebuild(conn, head, partitions, apply, progress)
            _swap(conn, schema, scratch, name, head, partitions, last_in_partition, tables)
        except BaseException:
            conn.rollback()
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(scratch)))
            conn.commit()
            raise
    return head


def _partition_count(conn: psycopg.Connection[Any]) -> int | None:
    row: Any = conn.execute("SELECT max(partitions) AS n FROM relay_state").fetchone()
    return int(row["n"]) if row and row["n"] else None


def _rebuild(
    conn: psycopg.Connection[Any],
    head: int,
    partitions: int | None,
    apply: Apply,
    progress: Callable[[int, int], None] | None,
) -> dict[int, int]:
    last_in_partition: dict[int, int] = {}
    position = 0
    while position < head:
        events = [e for e in read_after(conn, position, BATCH) if e.position <= head]
        if not events:
            break
        apply_all(conn, events, apply)
        conn.commit()
        if partitions:
            for e in events:
                last_in_partition[k.partition_for(k.event_key(e.customer_id, e.stream_id), partitions)] = (
                    e.position
                )
        position = events[-1].position
        if progress:
            progress(len(events), head)
    return last_in_partition


def _swap(
    conn: psycopg.Connection[Any],
    schema: str,
    scratch: str,
    name: str,
    head: int,
    partitions: int | None,
    last_in_partition: dict[int, int],
    tables: tuple[str, ...],
) -> None:
    with conn.transaction():
        main = sql.Identifier(schema)
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(main))
        existing: Any = conn.execute(
            "SELECT partition FROM projection_partitions WHERE name = %s FOR UPDATE", (name,)
        ).fetchall()
        rows = {r["partition"] for r in existing}
        if not rows:
            rows = set(range(partitions)) if partitions else {STORE_PARTITION}
        for table in tables:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}.{} CASCADE").format(main, sql.Identifier(table)))
            conn.execute(
                sql.SQL("ALTER TABLE {}.{} SET SCHEMA {}").format(
                    sql.Identifier(scratch), sql.Identifier(table), main
                )
            )
        for partition in rows:
            position = head if partition == STORE_PARTITION else last_in_partition.get(partition, 0)
            conn.execute(
                "INSERT INTO projection_partitions (name, partition, position, watermark)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (name, partition) DO UPDATE"
                " SET position = excluded.position, watermark = excluded.watermark, updated_at = now()",
                (name, partition, position, head),
            )
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(scratch)))
