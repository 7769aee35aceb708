"""A digest of a simulated history that does not depend on the random aggregate ids: every
UUID is replaced by the order of its first appearance in the log, so two runs of the same seed
digest alike exactly when they recorded the same events, in the same order, with the same
envelopes, payloads and timers."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import psycopg
from psycopg import sql

from infra.settings import DatabaseAddress

UUID_PATTERN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Set by the library from the wall clock when an event is made: not part of the history.
WALL_CLOCK_FIELDS = ("timestamp",)


class _Names:
    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def __call__(self, text: str) -> str:
        return UUID_PATTERN.sub(self._name, text)

    def _name(self, match: re.Match[str]) -> str:
        return self.seen.setdefault(match.group(0), f"#{len(self.seen)}")


def history_digest(address: DatabaseAddress, schema: str) -> str:
    """sha256 of the log (in position order) and of the clock's timers, ids renamed."""
    names = _Names()
    digest = hashlib.sha256()
    events = sql.SQL(
        "SELECT stream_id, version, type, occurred_at, customer_id, source, actor, correlation_id,"
        " causation_id, reason, schema_version, topic, payload FROM {}.events ORDER BY position"
    ).format(sql.Identifier(schema))
    timers = sql.SQL("SELECT aggregate_id, due_at FROM {}.ledger_timers").format(sql.Identifier(schema))
    with psycopg.connect(address.conninfo()) as conn:
        for row in conn.execute(events):
            *envelope, payload = row
            kept: dict[str, Any] = {k: v for k, v in payload.items() if k not in WALL_CLOCK_FIELDS}
            text = json.dumps([[str(v) for v in envelope], kept], sort_keys=True, default=str)
            digest.update(names(text).encode())
            digest.update(b"\n")
        # Timers in the order of their aggregates' first appearance, so row order does not matter.
        found = [(names(str(aggregate)), due.isoformat()) for aggregate, due in conn.execute(timers)]
    for aggregate, due in sorted(found, key=lambda t: (len(t[0]), t[0])):
        digest.update(f"timer {aggregate} {due}\n".encode())
    return digest.hexdigest()
