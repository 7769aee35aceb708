"""Reads of the event log itself, for auditors: one stream's history and the global log by
position, every envelope column with the payload as it was stored (never upcast or rewritten)."""

from __future__ import annotations

from datetime import datetime
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


def usage_line_sources(
    conn: Connection[Any],
    *,
    customer_id: UUID,
    metric: str,
    start: datetime,
    end: datetime,
    as_of: int,
) -> list[dict[str, Any]]:
    """The usage records behind an invoice's usage line: the customer's records of `metric`
    that occurred in [start, end) and were recorded at or before position `as_of`, each with its
    value as corrected by then."""
    rows: list[dict[str, Any]] = conn.execute(
        f"SELECT r.originator_id AS record_id, r.notification_id AS position, r.occurred_at,"
        f" coalesce(c.value, convert_from(r.state, 'UTF8')::jsonb ->> 'value') AS value"
        f" FROM {EVENTS_TABLE} r LEFT JOIN LATERAL ("
        f"  SELECT convert_from(x.state, 'UTF8')::jsonb ->> 'value' AS value FROM {EVENTS_TABLE} x"
        f"  WHERE x.originator_id = r.originator_id AND x.event_type = 'UsageRecord.Corrected'"
        f"  AND x.notification_id <= %(as_of)s ORDER BY x.originator_version DESC LIMIT 1) c ON true"
        f" WHERE r.customer_id = %(customer)s AND r.event_type = 'UsageRecord.Recorded'"
        f" AND r.occurred_at >= %(start)s AND r.occurred_at < %(end)s AND r.notification_id <= %(as_of)s"
        f" AND convert_from(r.state, 'UTF8')::jsonb ->> 'metric' = %(metric)s"
        f" ORDER BY r.notification_id",
        {"customer": customer_id, "metric": metric, "start": start, "end": end, "as_of": as_of},
    ).fetchall()
    return [{**r, "metric": metric} for r in rows]
