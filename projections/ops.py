"""Operational read side: how far the relay and each projector are behind the event store, and
where a projector stopped at an event it cannot apply."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from psycopg import Connection


def projection_status(conn: Connection[Any]) -> dict[str, Any]:
    head_row: Any = conn.execute(
        "SELECT coalesce(max(notification_id), 0) AS head FROM ledger_events"
    ).fetchone()
    head = int(head_row["head"])
    rows: list[Any] = conn.execute(
        "SELECT name, partition, position, watermark, updated_at, failed_position, failed_event_type,"
        " failed_error, failed_at, failed_attempts FROM projection_partitions ORDER BY name, partition"
    ).fetchall()
    by_name: dict[str, list[Any]] = {}
    for row in rows:
        by_name.setdefault(row["name"], []).append(row)
    projectors = []
    for name, partitions in by_name.items():
        applied = min(int(p["watermark"]) for p in partitions)
        failures = [
            {
                "partition": p["partition"],
                "position": int(p["failed_position"]),
                "event_type": p["failed_event_type"],
                "error": p["failed_error"],
                "since": p["failed_at"],
                "attempts": p["failed_attempts"],
            }
            for p in partitions
            if p["failed_position"] is not None and int(p["failed_position"]) > int(p["position"])
        ]
        projectors.append(
            {
                "name": name,
                "position": applied,
                "lag_events": max(0, head - applied),
                "lag_seconds": _lag_seconds(conn, applied, head),
                "status": "stopped" if failures else "running",
                "failure": min(failures, key=lambda f: f["position"]) if failures else None,
                "partitions": [
                    {
                        "partition": p["partition"],
                        "position": p["position"],
                        "watermark": p["watermark"],
                        "updated_at": p["updated_at"],
                    }
                    for p in partitions
                ],
            }
        )
    relays = [
        {
            "topic": r["topic"],
            "position": int(r["position"]),
            "lag_events": max(0, head - int(r["position"])),
            "lag_seconds": _lag_seconds(conn, int(r["position"]), head),
            "partitions": r["partitions"],
        }
        for r in conn.execute("SELECT topic, position, partitions FROM relay_state ORDER BY topic").fetchall()
    ]
    return {"head": head, "projectors": projectors, "relays": relays}


def _lag_seconds(conn: Connection[Any], applied: int, head: int) -> float:
    """Age of the oldest event not applied yet (0 when nothing is behind)."""
    if applied >= head:
        return 0.0
    row: Any = conn.execute(
        "SELECT recorded_at FROM ledger_events WHERE notification_id > %s ORDER BY notification_id LIMIT 1",
        (applied,),
    ).fetchone()
    if row is None:
        return 0.0
    return max(0.0, float((datetime.now(UTC) - row["recorded_at"]).total_seconds()))
