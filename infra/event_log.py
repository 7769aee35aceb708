"""Reads of the event log itself, for auditors: one stream's history and the global log by
position, every envelope column with the payload as it was stored (never upcast or rewritten)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson
from psycopg import Connection

from infra.hash_chain import EVENTS_TABLE

LOGGED_COLUMNS = (
    "notification_id AS position, originator_id AS stream_id, originator_version AS version,"
    " event_type AS type, occurred_at, recorded_at, customer_id, source, actor, reason,"
    " correlation_id, causation_id, schema_version, state"
)


def _logged(row: dict[str, Any]) -> dict[str, Any]:
    event = dict(row)
    event["payload"] = orjson.loads(event.pop("state"))
    return event


def stream_history(
    conn: Connection[Any], stream_id: UUID, *, after_version: int, limit: int
) -> list[dict[str, Any]]:
    """Events of one stream in version order (one more than `limit`: the caller pages)."""
    rows: list[dict[str, Any]] = conn.execute(
        f"SELECT {LOGGED_COLUMNS} FROM {EVENTS_TABLE} WHERE originator_id = %s AND originator_version > %s"
        " ORDER BY originator_version LIMIT %s",
        (stream_id, after_version, limit + 1),
    ).fetchall()
    return [_logged(r) for r in rows]


def log_after(conn: Connection[Any], *, after: int, limit: int) -> list[dict[str, Any]]:
    """The global log from position `after` on (one more than `limit`: the caller pages)."""
    rows: list[dict[str, Any]] = conn.execute(
        f"SELECT {LOGGED_COLUMNS} FROM {EVENTS_TABLE} WHERE notification_id > %s"
        " ORDER BY notification_id LIMIT %s",
        (after, limit + 1),
    ).fetchall()
    return [_logged(r) for r in rows]
