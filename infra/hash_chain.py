"""The hash chain over the event log: how an event's canonical bytes are defined and how hashes
are chained, in position order.

Canonical bytes of an event: PostgreSQL's binary encoding of the composite value
`ROW(position, stream_id, version, type, occurred_at, recorded_at, customer_id, source, actor,
correlation_id, causation_id, reason, schema_version, topic, payload bytes)` (`record_send`: an
int32 column count, then per column its type OID, its length, -1 for NULL, and its binary
value; text in UTF-8). Every envelope column and the stored payload bytes are covered, so any
change to a stored event changes its bytes.

    digest_i = sha256(canonical bytes of event i)          computed by the server, in C
    hash_i   = sha256(hash_{i-1} || position_i as 8 bytes big-endian || digest_i)
    hash_0   = 32 zero bytes

The per-event digests are computed in SQL: the server hashes the row where it lies and sends
40 bytes per event, so only the chaining (one sha256 of 72 bytes per event) happens in Python.
Anyone can recompute the chain from a plain dump of the table with the definition above."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from psycopg import Connection

EVENTS_TABLE = "ledger_events"
GENESIS = bytes(32)
RECORD = 40  # 8 bytes of position + 32 bytes of digest
POSITION = 8
MARK = 8  # how much of each event's chain hash a seal keeps to locate a difference

CANONICAL_ROW = (
    "ROW(notification_id, originator_id, originator_version, event_type, occurred_at, recorded_at,"
    " customer_id, source, actor, correlation_id, causation_id, reason, schema_version, topic, state)"
)
# Schema-qualified functions, so that nothing on the search path can stand in for them.
DIGEST = f"pg_catalog.sha256(pg_catalog.record_send({CANONICAL_ROW}))"

# One value per range: the concatenated 40-byte records, in position order. One aggregated
# value instead of one result row per event keeps the driver's per-row work out of the loop.
RECORDS_IN_RANGE = (
    f"SELECT pg_catalog.string_agg(pg_catalog.int8send(notification_id) || {DIGEST}, ''::bytea"
    f" ORDER BY notification_id) AS records FROM {EVENTS_TABLE}"
    " WHERE notification_id > %s AND notification_id <= %s"
)
RECORDS_AFTER = (
    f"SELECT pg_catalog.string_agg(pg_catalog.int8send(notification_id) || {DIGEST}, ''::bytea"
    f" ORDER BY notification_id) AS records FROM (SELECT * FROM {EVENTS_TABLE}"
    " WHERE notification_id > %s AND notification_id <= %s ORDER BY notification_id LIMIT %s) e"
)


def prepare_session(conn: Connection[Any]) -> None:
    """Text columns are encoded in the client encoding by `record_send`: fix it to UTF-8. And
    let a range's records be sorted in memory (for the rest of this transaction only)."""
    conn.execute("SET client_encoding TO 'UTF8'")
    conn.execute("SET LOCAL work_mem = '64MB'")


def records_in_range(conn: Connection[Any], after: int, up_to: int) -> bytes:
    """The (position, digest) records of the events with after < position <= up_to."""
    row: Any = conn.execute(RECORDS_IN_RANGE, (after, up_to), binary=True).fetchone()
    return _records(row)


def records_after(conn: Connection[Any], after: int, up_to: int, limit: int) -> bytes:
    """The records of at most `limit` events after `after`, up to `up_to`."""
    row: Any = conn.execute(RECORDS_AFTER, (after, up_to, limit), binary=True).fetchone()
    return _records(row)


def _records(row: Any) -> bytes:
    value = row[0] if isinstance(row, tuple) else row["records"]
    return bytes(value) if value is not None else b""


def position_at(records: bytes | memoryview, index: int) -> int:
    start = index * RECORD
    return int.from_bytes(records[start : start + POSITION], "big")


def event_count(records: bytes | memoryview) -> int:
    return len(records) // RECORD


def chain(previous: bytes, records: bytes | memoryview) -> bytes:
    """The chain hash after these records: the hot loop of verification."""
    sha256 = hashlib.sha256
    view = memoryview(records)
    h = previous
    for start in range(0, len(view) - RECORD + 1, RECORD):
        h = sha256(h + view[start : start + RECORD]).digest()
    return h


@dataclass(frozen=True)
class ChainedEvents:
    """Records chained one by one, keeping what a seal stores to locate a later difference."""

    hash: bytes
    positions: bytes  # 8 bytes big-endian per event
    marks: bytes  # the first MARK bytes of each event's chain hash

    @property
    def count(self) -> int:
        return len(self.positions) // POSITION


def chain_with_marks(previous: bytes, records: bytes | memoryview) -> ChainedEvents:
    sha256 = hashlib.sha256
    view = memoryview(records)
    positions = bytearray()
    marks = bytearray()
    h = previous
    for start in range(0, len(view) - RECORD + 1, RECORD):
        h = sha256(h + view[start : start + RECORD]).digest()
        positions += view[start : start + POSITION]
        marks += h[:MARK]
    return ChainedEvents(h, bytes(positions), bytes(marks))


def split_positions(blob: bytes) -> list[int]:
    return [int.from_bytes(blob[i : i + POSITION], "big") for i in range(0, len(blob), POSITION)]


def iter_marks(blob: bytes) -> Iterator[bytes]:
    for i in range(0, len(blob), MARK):
        yield blob[i : i + MARK]
