"""`ledger replay`: rebuild a projector's read models straight from the event store (no Kafka)
into fresh tables, then swap them in atomically with the projector's checkpoints.

The rebuild runs in a private schema put first on the search path, so the very same handlers
write into the new tables while the old ones keep answering queries. Events appended while the
rebuild runs are picked up afterwards by the live projector (its checkpoint moves to the rebuilt
position, and a gap is filled from the store)."""

from __future__ import annotations

import multiprocessing
import queue
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, wait
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from infra import kafka as k
from projections.checkpoints import STORE_PARTITION
from projections.core import StoredEventRow
from projections.runner import EVENT_COLUMNS, Apply, apply_all
from projections.schema import create_read_models

BATCH = 5000


def replay(
    conninfo: str,
    schema: str,
    name: str = "core",
    *,
    apply: Apply | None = None,
    tables: tuple[str, ...] | None = None,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
) -> int:
    """Rebuild and swap; answers the position the rebuilt read models are at. With `workers` > 1
    the projector named `name` is rebuilt by that many processes (its handlers from the registry)."""
    from projections.registry import projector, tables_of

    apply = apply or projector(name)
    tables = tables or tables_of(name)
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
        # The scratch tables are private until the swap: no WAL while filling them, and no
        # waiting for each batch to reach the disk (a crash only loses the scratch schema).
        for table in tables:
            conn.execute(sql.SQL("ALTER TABLE {} SET UNLOGGED").format(sql.Identifier(table)))
        conn.execute("SET synchronous_commit = off")
        conn.commit()
        try:
            last_in_partition = rebuild_into(
                conninfo, schema, scratch, name, head, partitions, apply, workers, progress
            )
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


def rebuild_into(
    conninfo: str,
    schema: str,
    scratch: str,
    name: str,
    head: int,
    partitions: int | None,
    apply: Apply,
    workers: int,
    progress: Callable[[int, int], None] | None,
    known_at: datetime | None = None,
) -> dict[int, int]:
    """Apply every event up to `head` into the scratch tables, in `workers` processes. Each
    worker takes the events of a share of the message keys (customers): a projector's rows only
    ever depend on events of their own key, exactly as Kafka partitions are consumed in parallel."""
    if workers <= 1:
        return _rebuild_share(
            conninfo, schema, scratch, name, head, partitions, 0, 1, None, apply, progress, known_at
        )
    context = multiprocessing.get_context(
        "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    )
    counter = context.Value("q", 0)
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_share_counter, initargs=(counter,)
    ) as pool:
        futures = [
            pool.submit(
                _rebuild_share,
                conninfo,
                schema,
                scratch,
                name,
                head,
                partitions,
                i,
                workers,
                None,
                None,
                None,
                known_at,
            )
            for i in range(workers)
        ]
        reported = 0
        while not all(f.done() for f in futures):
            wait(futures, timeout=0.2)
            done = counter.value
            if progress and done > reported:
                progress(done - reported, head)
                reported = done
        merged: dict[int, int] = {}
        for future in futures:
            for partition, position in future.result().items():
                merged[partition] = max(merged.get(partition, 0), position)
    if progress and counter.value > reported:
        progress(counter.value - reported, head)
    return merged


def _rebuild_share(
    conninfo: str,
    schema: str,
    scratch: str,
    name: str,
    head: int,
    partitions: int | None,
    share: int,
    shares: int,
    counter: Any,
    apply: Apply | None = None,
    progress: Callable[[int, int], None] | None = None,
    known_at: datetime | None = None,
) -> dict[int, int]:
    if apply is None:
        from projections.registry import projector

        apply = projector(name)
    last_in_partition: dict[int, int] = {}
    with psycopg.connect(conninfo, row_factory=dict_row, autocommit=True) as conn:
        conn.execute(
            sql.SQL("SET search_path TO {}, {}").format(sql.Identifier(scratch), sql.Identifier(schema))
        )
        conn.execute("SET synchronous_commit = off")
        for events in _prefetched(conninfo, schema, head, share, shares, known_at):
            with conn.transaction():
                apply_all(conn, events, apply)
            if partitions:
                for e in events:
                    key = k.event_key(e.customer_id, e.stream_id)
                    last_in_partition[k.partition_for(key, partitions)] = e.position
            shared = counter if counter is not None else _worker_counter
            if shared is not None:
                with shared.get_lock():
                    shared.value += len(events)
            if progress:
                progress(len(events), head)
    return last_in_partition


_worker_counter: Any = None


def _share_counter(counter: Any) -> None:
    """Process-pool initializer: the shared progress counter is inherited, not pickled."""
    global _worker_counter
    _worker_counter = counter


def _prefetched(
    conninfo: str, schema: str, head: int, share: int, shares: int, known_at: datetime | None = None
) -> Iterator[list[Any]]:
    """Batches of events read on a connection of their own, one batch ahead of the caller, so
    reading the log overlaps applying it."""
    batches: queue.Queue[list[Any] | BaseException | None] = queue.Queue(maxsize=2)

    def read() -> None:
        try:
            with psycopg.connect(conninfo, autocommit=True) as reader:
                reader.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
                position = 0
                while position < head:
                    rows = reader.execute(
                        SELECT_SHARE,
                        {
                            "after": position,
                            "head": head,
                            "shares": shares,
                            "share": share,
                            "limit": BATCH,
                            "known_at": known_at,
                        },
                    ).fetchall()
                    if not rows:
                        break
                    batches.put([_tuple_row(r) for r in rows])
                    position = rows[-1][0]
            batches.put(None)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
            batches.put(error)

    threading.Thread(target=read, name="replay-reader", daemon=True).start()
    while (batch := batches.get()) is not None:
        if isinstance(batch, BaseException):
            raise batch
        yield batch


def _tuple_row(r: tuple[Any, ...]) -> StoredEventRow:
    position, stream_id, version, kind, occurred_at, recorded_at, customer_id, state = r
    return StoredEventRow(
        position, stream_id, version, kind, occurred_at, recorded_at, customer_id, orjson.loads(state)
    )


SELECT_SHARE = (
    f"SELECT {EVENT_COLUMNS} FROM ledger_events"
    " WHERE notification_id > %(after)s AND notification_id <= %(head)s"
    " AND (%(shares)s = 1 OR"
    " abs(hashtext(coalesce(customer_id, originator_id)::text)) %% %(shares)s = %(share)s)"
    " AND (%(known_at)s::timestamptz IS NULL OR recorded_at <= %(known_at)s)"
    " ORDER BY notification_id LIMIT %(limit)s"
)


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
    conn.execute("SET synchronous_commit = on")
    for table in tables:
        conn.execute(
            sql.SQL("ALTER TABLE {}.{} SET LOGGED").format(sql.Identifier(scratch), sql.Identifier(table))
        )
    conn.commit()
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
