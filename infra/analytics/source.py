"""What leaves PostgreSQL for analytics, and how: Arrow copied out in one read-only,
repeatable-read transaction (adbc-driver-postgresql, which uses binary COPY), so the events and
the read models of one copy are one consistent snapshot of the database.

The events and then each read-model table come as streams of record batches (Arrow
RecordBatchReaders), read while the snapshot's transaction is still open: whoever copies them
(DuckDB, a Parquet export) holds one batch at a time, not the whole log (3.7 million events were
a 4.7 GiB Arrow table) nor the read models (340 MiB of Arrow beside them on that history).

Events are immutable and their positions follow commit order (appends take the store's table
lock), so a copy after position P only needs the events above P: nothing is ever filled in
below a position already copied. Read models change in place and carry no change position,
so each copy takes them whole (they are far smaller than the log)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, cast

import pyarrow as pa
from psycopg.conninfo import make_conninfo

from infra.analytics.sandbox import AnalyticsError

EVENTS_TABLE = "ledger_events"

# The common fields of every stored event, as the `events` view of the event store names them
# (infra/eventstore.py), with the payload as JSON text (Arrow's `arrow.json` type, DuckDB JSON).
EVENT_COLUMNS = (
    "notification_id AS position, originator_id AS stream_id, originator_version AS version, "
    "event_type AS type, occurred_at, recorded_at, customer_id, source, actor, correlation_id, "
    "causation_id, reason, schema_version, convert_from(state, 'UTF8')::json AS payload"
)

# The Arrow schema of copied events (what adbc gives for EVENT_COLUMNS), for an empty export.
EVENTS_SCHEMA = pa.schema(
    [
        ("position", pa.int64()),
        ("stream_id", pa.uuid()),
        ("version", pa.int64()),
        ("type", pa.string()),
        ("occurred_at", pa.timestamp("us", tz="UTC")),
        ("recorded_at", pa.timestamp("us", tz="UTC")),
        ("customer_id", pa.uuid()),
        ("source", pa.string()),
        ("actor", pa.string()),
        ("correlation_id", pa.uuid()),
        ("causation_id", pa.uuid()),
        ("reason", pa.string()),
        ("schema_version", pa.int32()),
        ("payload", pa.json_()),
    ]
)

# Read-model tables copied whole on each refresh; the MRR tables may not exist yet (their
# projector lands separately): a missing table is skipped, and its view is not created.
READ_MODEL_TABLES = (
    "rm_plans",
    "rm_customers",
    "rm_subscriptions",
    "rm_invoices",
    "rm_payments",
    "rm_alerts",
    "rm_mrr_daily",
    "rm_mrr_movements",
)

CORE_PROJECTION = "core"


class NoEventStore(AnalyticsError):
    code = "no_event_store"


# Arrow as a stream of batches, or whole where it is at hand whole (a Parquet export).
ArrowData: TypeAlias = pa.RecordBatchReader | pa.Table


@dataclass(frozen=True)
class Snapshot:
    """One copy: the events in (after, position] (none when the events were not asked for), and
    every read-model table as it was, each to be read once while the copy is open.

    `read_models` maps each table to a call that copies it: they share the copy's connection, so
    read the events first, then call them one at a time, reading each before the next.

    `read_models_position` is the position the core projector had applied when the read models
    were copied (they may lag the log by the projection's lag)."""

    after: int | None
    position: int
    events: ArrowData | None
    read_models: Mapping[str, Callable[[], ArrowData]]
    read_models_position: int


class AnalyticsSource(Protocol):
    """Where an engine gets its data: the database, or a Parquet export of it."""

    def head(self) -> int:
        """The position of the newest event available."""
        ...

    def read(self, events_after: int | None) -> AbstractContextManager[Snapshot]:
        """The events above `events_after` (None: no events) and all the read models; the events'
        stream is readable until the context ends."""
        ...


def snapshot_conninfo(conninfo: str, schema: str) -> str:
    """A connection that can only read, and reads one snapshot for its whole transaction."""
    options = (
        r"-c default_transaction_read_only=on -c default_transaction_isolation=repeatable\ read "
        f"-c search_path={schema} -c application_name=ledger-analytics"
    )
    return make_conninfo(conninfo, options=options)


class PostgresSource:
    """Copies from the ledger's schema. Each call opens its own short-lived connection: the API
    copies rarely (on refresh), and no connection is held between copies."""

    def __init__(self, conninfo: str, schema: str) -> None:
        self.conninfo = snapshot_conninfo(conninfo, schema)
        self.schema = schema

    def _connect(self) -> Any:
        import adbc_driver_postgresql.dbapi

        return adbc_driver_postgresql.dbapi.connect(self.conninfo)

    def head(self) -> int:
        with self._connect() as conn, conn.cursor() as cur:
            _check_event_store(cur, self.schema)
            return _scalar(cur, f"SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}")

    @contextmanager
    def read(self, events_after: int | None) -> Iterator[Snapshot]:
        # adbc's DB-API connection runs everything in one transaction until commit/rollback:
        # with the options above, one repeatable-read snapshot for all the statements. The
        # events go last: their stream keeps the connection busy until it is read.
        with self._connect() as conn, conn.cursor() as cur:
            _check_event_store(cur, self.schema)
            position = _scalar(cur, f"SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}")
            present = []
            for table in READ_MODEL_TABLES:
                cur.execute("SELECT to_regclass($1) IS NOT NULL", parameters=(table,))
                if cur.fetchone()[0]:
                    present.append(table)
            cur.execute(
                "SELECT coalesce(min(watermark), 0) FROM projection_partitions WHERE name = $1",
                parameters=(CORE_PROJECTION,),
            )
            read_models_position = int(cur.fetchone()[0])
            events = None
            if events_after is not None:
                # The bounds written into the statement (integers, never text): adbc streams a
                # statement without parameters through binary COPY, batch by batch, but runs one
                # with parameters as a plain query whose whole result libpq holds in memory
                # (600 MiB for 746,564 events, before the first batch is read).
                cur.execute(
                    f"SELECT {EVENT_COLUMNS} FROM {EVENTS_TABLE} WHERE notification_id > {int(events_after)}"
                    f" AND notification_id <= {int(position)} ORDER BY notification_id"
                )
                events = cur.fetch_record_batch()

            def copier(table: str) -> Callable[[], ArrowData]:
                def copy() -> ArrowData:
                    cur.execute(f"SELECT * FROM {table}")
                    return cast(ArrowData, cur.fetch_record_batch())

                return copy

            read_models = {table: copier(table) for table in present}
            try:
                yield Snapshot(events_after, position, events, read_models, read_models_position)
            finally:
                if events is not None:
                    events.close()  # a stream not read to its end is abandoned with the transaction
                conn.rollback()  # it only read


def _check_event_store(cur: Any, schema: str) -> None:
    cur.execute("SELECT to_regclass($1) IS NOT NULL", parameters=(EVENTS_TABLE,))
    if not cur.fetchone()[0]:
        raise NoEventStore(f"no event store in schema '{schema}' of this database (is it the ledger's?)")


def _scalar(cur: Any, query: str) -> int:
    cur.execute(query)
    return int(cur.fetchone()[0])
