"""Read models as the ledger knew them at a moment (`known_at`): the same projection code run
over only the events recorded at or before that moment, into a schema of their own.

A snapshot is named after the set of events it covers (their count and highest position), so
two moments that saw the same events share one, and a snapshot, once complete, never changes:
later events are not in it by definition. Snapshots are caches: unlogged (after a crash they
are empty and get rebuilt) and disposable (`drop_snapshots`)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import psycopg
from psycopg import Connection, sql
from psycopg.rows import dict_row

from projections.replay import rebuild_into
from projections.schema import create_read_models

SNAPSHOT_PREFIX = "known"


def snapshot_name(schema: str, events: int, last_position: int) -> str:
    return f"{schema}_{SNAPSHOT_PREFIX}_{last_position}_{events}"


def known_at_snapshot(
    conninfo: str,
    schema: str,
    known_at: datetime,
    *,
    name: str = "core",
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> str:
    """The schema holding the read models of the events recorded at or before `known_at`
    (built now if no such snapshot exists yet)."""
    from projections.registry import projector, tables_of

    with psycopg.connect(conninfo, row_factory=dict_row, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        seen: Any = conn.execute(
            "SELECT count(*) AS events, coalesce(max(notification_id), 0) AS last FROM ledger_events"
            " WHERE recorded_at <= %s",
            (known_at,),
        ).fetchone()
        target = snapshot_name(schema, int(seen["events"]), int(seen["last"]))
        if _complete(conn, target):
            return target
        scratch = f"{schema}_building_{uuid.uuid4().hex[:8]}"
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(scratch)))
        try:
            conn.execute(
                sql.SQL("SET search_path TO {}, {}").format(sql.Identifier(scratch), sql.Identifier(schema))
            )
            create_read_models(conn)
            tables = tables_of(name)
            for table in tables:
                conn.execute(sql.SQL("ALTER TABLE {} SET UNLOGGED").format(sql.Identifier(table)))
            rebuild_into(
                conninfo,
                schema,
                scratch,
                name,
                int(seen["last"]),
                None,
                projector(name),
                workers,
                progress,
                known_at,
            )
            conn.execute(
                "CREATE UNLOGGED TABLE snapshot_info AS SELECT %s::timestamptz AS known_at,"
                " %s::bigint AS events, %s::bigint AS last_position",
                (known_at, seen["events"], seen["last"]),
            )
            with conn.transaction():
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(target)))
                conn.execute(
                    sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                        sql.Identifier(scratch), sql.Identifier(target)
                    )
                )
        except BaseException:
            with contextlib.suppress(psycopg.Error):
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(scratch)))
            raise
    return target


def _complete(conn: Connection[Any], target: str) -> bool:
    exists = conn.execute(
        "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = 'snapshot_info'",
        (target,),
    ).fetchone()
    if exists is None:
        return False
    row = conn.execute(
        sql.SQL("SELECT count(*) AS n FROM {}.snapshot_info").format(sql.Identifier(target))
    ).fetchone()
    return bool(row and row["n"])  # type: ignore[call-overload]


@contextlib.contextmanager
def reading_snapshot(conn: Connection[Any], snapshot: str, schema: str) -> Iterator[Connection[Any]]:
    """Point a pooled connection's queries at a snapshot, and back at the live schema after."""
    conn.execute(
        sql.SQL("SET search_path TO {}, {}").format(sql.Identifier(snapshot), sql.Identifier(schema))
    )
    try:
        yield conn
    finally:
        conn.execute("RESET search_path")


def drop_snapshots(conninfo: str, schema: str) -> int:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s",
                (f"{schema}_{SNAPSHOT_PREFIX}_%",),
            ).fetchall()
        ]
        for snapshot in names:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(snapshot)))
    return len(names)
