"""The event store: eventsourcing's PostgreSQL recorder, extended so that every stored event
carries its envelope (business time, customer, source, actor, correlation...) as real columns,
and so that the database itself refuses to update, delete or truncate stored events."""

from __future__ import annotations

import contextvars
import hashlib
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache
from types import NoneType, UnionType
from typing import Any, NamedTuple
from uuid import UUID

import orjson
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    Mapper,
    OperationalError,
    StoredEvent,
    Transcoder,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import get_topic, resolve_topic, retry
from psycopg import Cursor
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Identifier, Literal

from domain.ids import DAILY_CLOCK_TIMER_ID
from infra import recorded_positions
from infra.group_commit import CommitGroups

SOURCES = ("api", "ingest", "stripe", "policy", "system")


@dataclass(frozen=True)
class Envelope:
    """Who and what caused the events of one save: set by the application around each command."""

    source: str = "system"
    actor: str | None = None
    correlation_id: UUID | None = None
    causation_id: UUID | None = None
    reason: str | None = None
    customers: dict[UUID, UUID | None] = field(default_factory=dict)
    # When each saved time-driven aggregate next falls due (None: never again), kept in
    # `ledger_timers` in the same transaction as the events, so the clock finds what is due.
    timers: dict[UUID, datetime | None] = field(default_factory=dict)


current_envelope: contextvars.ContextVar[Envelope | None] = contextvars.ContextVar(
    "current_envelope", default=None
)


@dataclass(frozen=True)
class LedgerStoredEvent(StoredEvent):
    event_type: str = ""
    occurred_at: datetime | None = None
    customer_id: UUID | None = None
    source: str = "system"
    actor: str | None = None
    correlation_id: UUID | None = None
    causation_id: UUID | None = None
    reason: str | None = None
    schema_version: int = 1


def event_type_name(topic: str) -> str:
    """`domain.invoice:Invoice.Finalized` -> `Invoice.Finalized`: stable, human-readable."""
    return topic.rsplit(":", 1)[-1]


class PlainJSONTranscoder(Transcoder):
    """Plain JSON (UUIDs and datetimes as strings), readable by Kafka consumers and DuckDB.
    Types are restored by `LedgerMapper` from each event class's annotations."""

    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(obj, default=_json_default)

    def decode(self, data: bytes) -> Any:
        return orjson.loads(data)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _converter(hint: Any) -> Callable[[Any], Any] | None:
    if isinstance(hint, UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not NoneType]
        inner = _converter(args[0]) if len(args) == 1 else None
        if inner is None:
            return None
        return lambda v: None if v is None else inner(v)
    if hint is datetime:
        return lambda v: datetime.fromisoformat(v).astimezone(UTC)
    if hint is date:
        return date.fromisoformat
    if hint is UUID:
        return UUID
    if hint is Decimal:
        return Decimal
    return None


@cache
def _converters(cls: type) -> dict[str, Callable[[Any], Any]]:
    hints = typing.get_type_hints(cls)
    found = {name: _converter(hint) for name, hint in hints.items()}
    return {name: conv for name, conv in found.items() if conv is not None}


NO_ENVELOPE = Envelope()


@cache
def _names_of(cls: type) -> tuple[str, str, int]:
    """An event class's topic, event type and class version."""
    topic = get_topic(cls)
    return topic, event_type_name(topic), getattr(cls, "class_version", 1)


class LedgerMapper(Mapper[UUID]):
    def __init__(self) -> None:
        super().__init__(transcoder=PlainJSONTranscoder())

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        return LedgerStoredEvent(*self.to_row(domain_event))

    def to_row(self, domain_event: DomainEventProtocol[UUID]) -> NewStreamRow:
        """The event as the columns of the events table, with the envelope of the current save."""
        envelope = current_envelope.get() or NO_ENVELOPE
        topic, event_type, class_version = _names_of(type(domain_event))
        state = dict(vars(domain_event))
        originator_id = state.pop("originator_id")
        originator_version = state.pop("originator_version")
        if class_version > 1:
            state["class_version"] = class_version
        customer_id = state.get("customer_id")
        if not isinstance(customer_id, UUID):
            customer_id = envelope.customers.get(originator_id)
        occurred_at = state.get("occurred_at")
        return NewStreamRow(
            originator_id,
            originator_version,
            topic,
            self.transcoder.encode(state),
            event_type,
            occurred_at if isinstance(occurred_at, datetime) else state["timestamp"],
            customer_id,
            envelope.source,
            envelope.actor,
            envelope.correlation_id,
            envelope.causation_id,
            envelope.reason,
            class_version,
        )

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        cls = resolve_topic(stored_event.topic)
        state: dict[str, Any] = self.transcoder.decode(stored_event.state)
        for name, convert in _converters(cls).items():
            if name in state:
                state[name] = convert(state[name])
        state["originator_id"] = UUID(str(stored_event.originator_id))
        state["originator_version"] = stored_event.originator_version
        class_version = getattr(cls, "class_version", 1)
        from_version = state.pop("class_version", 1)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(state)
            from_version += 1
        domain_event = object.__new__(cls)
        object.__setattr__(domain_event, "__dict__", state)
        return typing.cast(DomainEventProtocol[UUID], domain_event)


class NewStreamRow(NamedTuple):
    """The first stored event of a new stream, as the columns of the events table (ingest's
    fast path builds these directly; `of` converts a mapped event)."""

    originator_id: UUID
    originator_version: int
    topic: str
    state: bytes
    event_type: str
    occurred_at: datetime | None
    customer_id: UUID | None
    source: str
    actor: str | None
    correlation_id: UUID | None
    causation_id: UUID | None
    reason: str | None
    schema_version: int

    @classmethod
    def of(cls, e: LedgerStoredEvent) -> NewStreamRow:
        return cls(
            UUID(str(e.originator_id)),
            e.originator_version,
            e.topic,
            e.state,
            e.event_type or event_type_name(e.topic),
            e.occurred_at,
            e.customer_id,
            e.source,
            e.actor,
            e.correlation_id,
            e.causation_id,
            e.reason,
            e.schema_version,
        )


COPY_TYPES = (
    *("uuid", "int8", "text", "bytea", "text", "timestamptz", "uuid"),
    *("text", "text", "uuid", "uuid", "text", "int4"),
)


@dataclass(frozen=True)
class NewStreams:
    """What `append_new_streams` did: the position of each stream it created, and the
    position and state of the first event of each stream that already existed."""

    positions: dict[UUID, int]
    existing: dict[UUID, tuple[int, bytes]]


class _Append(NamedTuple):
    """The events of one `insert_events` call and the timers of the aggregates it saves."""

    events: list[LedgerStoredEvent]
    timers: dict[UUID, datetime | None]


ENVELOPE_COLUMNS = (
    ("event_type", "text NOT NULL DEFAULT ''"),
    ("occurred_at", "timestamptz"),
    ("recorded_at", "timestamptz NOT NULL DEFAULT clock_timestamp()"),
    ("customer_id", "uuid"),
    ("source", "text NOT NULL DEFAULT 'system'"),
    ("actor", "text"),
    ("correlation_id", "uuid"),
    ("causation_id", "uuid"),
    ("reason", "text"),
    ("schema_version", "integer NOT NULL DEFAULT 1"),
)


class LedgerRecorder(PostgresApplicationRecorder):
    """Application recorder with envelope columns and immutability enforced by triggers.

    Appends still take the library's EXCLUSIVE table lock, so positions are handed out in
    commit order and a reader tailing by position never passes over a gap filled later.
    No NOTIFY is sent inside append transactions: it would serialise commits.

    An append is one call of a server-side function (`<table>_append`), sent outside pipeline
    mode: PostgreSQL runs it only once the whole message, events included, has arrived, and the
    function takes the lock, inserts and returns, so the lock is held for server-side work only,
    never while bytes are still on their way. The library's pipelined append sent the LOCK
    before the INSERT's parameters; psycopg's pipeline loop (3.3.9) stops flushing when its
    queue is empty although libpq still holds unsent bytes (`PQflush` returned 1), then waits
    for results: with an event larger than the socket accepts at once (900 KB over a Unix
    socket, a few MB over TCP) the server sat in ClientRead holding the lock for ever, and
    every other write timed out behind it."""

    #: Appends one transaction may hold: enough to take a whole burst of concurrent commands.
    MAX_APPENDS_PER_TRANSACTION = 256

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        self._appends: CommitGroups[_Append, list[int]] = CommitGroups(
            self._append_group, max_items=self.MAX_APPENDS_PER_TRANSACTION
        )
        schema = Identifier(self.datastore.schema)
        table = Identifier(self.events_table_name)
        for column, definition in ENVELOPE_COLUMNS:
            self.sql_create_statements.append(
                SQL("ALTER TABLE {schema}.{table} ADD COLUMN IF NOT EXISTS {column} " + definition).format(
                    schema=schema, table=table, column=Identifier(column)
                )
            )
        self.sql_create_statements.extend(
            [
                SQL(
                    "CREATE INDEX IF NOT EXISTS {index} ON {schema}.{table} (customer_id, notification_id)"
                ).format(
                    index=Identifier(f"{self.events_table_name}_customer_idx"), schema=schema, table=table
                ),
                # Billing reads a customer's usage of a period: its records by business time.
                SQL(
                    "CREATE INDEX IF NOT EXISTS {index} ON {schema}.{table} (customer_id, occurred_at) "
                    "WHERE event_type = 'UsageRecord.Recorded'"
                ).format(index=Identifier(f"{self.events_table_name}_usage_idx"), schema=schema, table=table),
                SQL(
                    "CREATE OR REPLACE FUNCTION {schema}.ledger_refuse_change() RETURNS trigger "
                    "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION "
                    "'stored events are immutable: % refused on %', TG_OP, TG_TABLE_NAME "
                    "USING ERRCODE = 'insufficient_privilege'; END $$"
                ).format(schema=schema),
                SQL(
                    "CREATE OR REPLACE TRIGGER ledger_events_immutable BEFORE UPDATE OR DELETE "
                    "ON {schema}.{table} FOR EACH ROW EXECUTE FUNCTION {schema}.ledger_refuse_change()"
                ).format(schema=schema, table=table),
                SQL(
                    "CREATE OR REPLACE TRIGGER ledger_events_no_truncate BEFORE TRUNCATE "
                    "ON {schema}.{table} FOR EACH STATEMENT EXECUTE FUNCTION {schema}.ledger_refuse_change()"
                ).format(schema=schema, table=table),
                # The ledger's clock: when each time-driven aggregate next falls due. Written with the
                # events that change it; created once, seeded with every subscription so a store
                # written before the table existed is caught up by the first sweep.
                SQL(
                    "DO $$ BEGIN IF to_regclass({qualified}) IS NULL THEN "
                    "CREATE TABLE {schema}.ledger_timers (aggregate_id uuid PRIMARY KEY, "
                    "due_at timestamptz NOT NULL); "
                    "CREATE INDEX ledger_timers_due ON {schema}.ledger_timers (due_at); "
                    "INSERT INTO {schema}.ledger_timers SELECT DISTINCT originator_id, "
                    "timestamptz '2000-01-01 00:00+00' FROM {schema}.{table} "
                    "WHERE event_type = 'Subscription.Started'; "
                    "INSERT INTO {schema}.ledger_timers VALUES ({daily}, date_trunc('day', now())); "
                    "END IF; END $$"
                ).format(
                    schema=schema,
                    table=table,
                    qualified=Literal(f"{self.datastore.schema}.ledger_timers"),
                    daily=Literal(str(DAILY_CLOCK_TIMER_ID)),
                ),
                SQL(
                    "CREATE OR REPLACE VIEW {schema}.events AS SELECT notification_id AS position, "
                    "originator_id AS stream_id, originator_version AS version, event_type AS type, "
                    "occurred_at, recorded_at, customer_id, source, actor, correlation_id, causation_id, "
                    "reason, schema_version, topic, convert_from(state, 'UTF8')::jsonb AS payload "
                    "FROM {schema}.{table}"
                ).format(schema=schema, table=table),
            ]
        )
        append = Identifier(f"{self.events_table_name}_append")
        self.sql_create_statements.append(
            SQL(
                "CREATE OR REPLACE FUNCTION {schema}.{append}(originator_ids uuid[], versions bigint[], "
                "topics text[], states bytea[], event_types text[], occurred timestamptz[], "
                "customers uuid[], sources text[], actors text[], correlations uuid[], causations uuid[], "
                "reasons text[], schema_versions int[], timer_ids uuid[], timer_dues timestamptz[]) "
                "RETURNS SETOF bigint LANGUAGE plpgsql AS $$ "
                "BEGIN "
                "PERFORM set_config('lock_timeout', {lock_timeout}, true); "
                "LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE; "
                "RETURN QUERY INSERT INTO {schema}.{table} (originator_id, originator_version, topic, "
                "state, event_type, occurred_at, customer_id, source, actor, correlation_id, "
                "causation_id, reason, schema_version) "
                "SELECT * FROM unnest(originator_ids, versions, topics, states, event_types, occurred, "
                "customers, sources, actors, correlations, causations, reasons, schema_versions) "
                "RETURNING notification_id; "
                "INSERT INTO {schema}.ledger_timers (aggregate_id, due_at) "
                "SELECT t.id, t.due FROM unnest(timer_ids, timer_dues) AS t(id, due) WHERE t.due IS NOT NULL "
                "ON CONFLICT (aggregate_id) DO UPDATE SET due_at = excluded.due_at; "
                "DELETE FROM {schema}.ledger_timers WHERE aggregate_id IN "
                "(SELECT t.id FROM unnest(timer_ids, timer_dues) AS t(id, due) WHERE t.due IS NULL); "
                "END $$"
            ).format(
                schema=schema,
                table=table,
                append=append,
                lock_timeout=Literal(f"{self.datastore.lock_timeout}s"),
            )
        )
        # Binary parameters (%b): arrays of event states are dumped several times faster so.
        self._append_sql = SQL(
            "SELECT {schema}.{append}(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[], %b::text[], "
            "%b::timestamptz[], %b::uuid[], %b::text[], %b::text[], %b::uuid[], %b::uuid[], "
            "%b::text[], %b::int[], %b::uuid[], %b::timestamptz[]) AS notification_id"
        ).format(schema=schema, append=append)
        staging = Identifier(f"{self.events_table_name}_staged")
        columns = SQL(
            "originator_id, originator_version, topic, state, event_type, occurred_at, customer_id, "
            "source, actor, correlation_id, causation_id, reason, schema_version"
        )
        self._staging_sql = SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {staging} (ordinal int, originator_id uuid, "
            "originator_version bigint, topic text, state bytea, event_type text, occurred_at timestamptz, "
            "customer_id uuid, source text, actor text, correlation_id uuid, causation_id uuid, "
            "reason text, schema_version int) ON COMMIT DELETE ROWS"
        ).format(staging=staging)
        self._copy_staging_sql = SQL("COPY {staging} (ordinal, {columns}) FROM STDIN (FORMAT BINARY)").format(
            staging=staging, columns=columns
        )
        # Look-ups of given streams are written as one primary-key probe per stream (`OFFSET 0`
        # keeps the planner from turning them into a join that scans the whole table, which it
        # would choose from the statistics of a young table while it grows).
        probe = SQL(
            "SELECT e.notification_id, e.state FROM {schema}.{table} e "
            "WHERE e.originator_id = {id} AND e.originator_version = 1 OFFSET 0"
        )
        # Under the lock: the new rows inserted (their positions answered, states left out), then,
        # only if some staged stream existed already, those streams' first events, read as the
        # log stood before the insert. One statement: the lock is held for server-side work only.
        append_staged = Identifier(f"{self.events_table_name}_append_staged")
        self.sql_create_statements.append(
            SQL(
                "CREATE OR REPLACE FUNCTION {schema}.{append_staged}() "
                "RETURNS TABLE (stream uuid, stream_position bigint, first_state bytea) "
                "LANGUAGE plpgsql AS $$ DECLARE head bigint; inserted bigint; BEGIN "
                "PERFORM set_config('lock_timeout', {lock_timeout}, true); "
                "LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE; "
                "SELECT coalesce(max(x.notification_id), 0) INTO head FROM {schema}.{table} x; "
                "RETURN QUERY INSERT INTO {schema}.{table} AS n ({columns}) "
                "SELECT {columns} FROM {staging} s WHERE NOT EXISTS ({probe}) ORDER BY s.ordinal "
                "RETURNING n.originator_id, n.notification_id, NULL::bytea; "
                "GET DIAGNOSTICS inserted = ROW_COUNT; "
                "IF inserted < (SELECT count(*) FROM {staging}) THEN "
                "RETURN QUERY SELECT s.originator_id, e.notification_id, e.state FROM {staging} s "
                "CROSS JOIN LATERAL ({probe_before}) e; "
                "END IF; END $$"
            ).format(
                schema=schema,
                append_staged=append_staged,
                table=table,
                staging=staging,
                columns=columns,
                lock_timeout=Literal(f"{self.datastore.lock_timeout}s"),
                probe=probe.format(schema=schema, table=table, id=SQL("s.originator_id")),
                probe_before=SQL(
                    "SELECT e.notification_id, e.state FROM {schema}.{table} e WHERE e.originator_id = "
                    "s.originator_id AND e.originator_version = 1 AND e.notification_id <= head OFFSET 0"
                ).format(schema=schema, table=table),
            )
        )
        self._append_staged_sql = SQL("SELECT * FROM {schema}.{append_staged}()").format(
            schema=schema, append_staged=append_staged
        )
        self._existing_streams_sql = SQL(
            "SELECT s.id AS originator_id, e.notification_id, e.state FROM unnest(%s::uuid[]) AS s(id) "
            "CROSS JOIN LATERAL ({probe}) e"
        ).format(probe=probe.format(schema=schema, table=table, id=SQL("s.id")))
        # A join on the primary key, so the plan stays an index lookup per stream however
        # stale the table's statistics are while it grows.
        self._event_types_sql = SQL(
            "SELECT s.id AS originator_id, array_agg(DISTINCT e.event_type) AS types "
            "FROM unnest(%s::uuid[]) AS s(id) CROSS JOIN LATERAL (SELECT e.event_type "
            "FROM {schema}.{table} e WHERE e.originator_id = s.id AND e.event_type = ANY(%s::text[]) "
            "OFFSET 0) e GROUP BY s.id"
        ).format(schema=schema, table=table)
        self._set_timers_sql = SQL(
            "INSERT INTO {schema}.ledger_timers (aggregate_id, due_at) "
            "SELECT * FROM unnest(%s::uuid[], %s::timestamptz[]) "
            "ON CONFLICT (aggregate_id) DO UPDATE SET due_at = excluded.due_at"
        ).format(schema=schema)
        self._clear_timers_sql = SQL(
            "DELETE FROM {schema}.ledger_timers WHERE aggregate_id = ANY(%s::uuid[])"
        ).format(schema=schema)
        self._due_timers_sql = SQL(
            "SELECT aggregate_id FROM {schema}.ledger_timers WHERE due_at <= %s ORDER BY due_at LIMIT %s"
        ).format(schema=schema)
        self._timer_sql = SQL("SELECT due_at FROM {schema}.ledger_timers WHERE aggregate_id = %s").format(
            schema=schema
        )
        # A customer's usage records with their current value (the last correction's, if any),
        # by business time and/or recorded (or corrected) after a position.
        self._usage_sql = SQL(
            "SELECT r.customer_id, r.originator_id, r.notification_id, r.occurred_at, "
            "convert_from(r.state, 'UTF8')::jsonb ->> 'metric' AS metric, "
            "coalesce(c.value, convert_from(r.state, 'UTF8')::jsonb ->> 'value') AS value, "
            "greatest(r.notification_id, c.position) AS changed_at "
            "FROM {schema}.{table} r LEFT JOIN LATERAL ("
            "SELECT convert_from(x.state, 'UTF8')::jsonb ->> 'value' AS value, x.notification_id AS position "
            "FROM {schema}.{table} x WHERE x.originator_id = r.originator_id AND x.originator_version > 1 "
            "AND x.event_type = 'UsageRecord.Corrected' AND x.notification_id <= %(upto)s "
            "ORDER BY x.originator_version DESC LIMIT 1) c ON true "
            "WHERE r.customer_id = ANY(%(customers)s::uuid[]) AND r.event_type = 'UsageRecord.Recorded' "
            "AND r.occurred_at >= %(start)s AND r.occurred_at < %(end)s "
            "AND (r.notification_id > %(after)s OR c.position > %(after)s) "
            "AND r.notification_id <= %(upto)s "
            "ORDER BY r.notification_id"
        ).format(schema=schema, table=table)
        self._position_at_sql = SQL(
            "SELECT notification_id FROM {schema}.{table} WHERE recorded_at <= %s"
            " ORDER BY notification_id DESC LIMIT 1"
        ).format(schema=schema, table=table)
        self._version_at_sql = SQL(
            "SELECT max(originator_version) AS version FROM {schema}.{table}"
            " WHERE originator_id = %s AND notification_id <= %s"
        ).format(schema=schema, table=table)
        self._subscriptions_sql = SQL(
            "SELECT originator_id FROM {schema}.{table} WHERE customer_id = %s"
            " AND event_type = 'Subscription.Started' ORDER BY notification_id"
        ).format(schema=schema, table=table)
        self._load_many_sql = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {schema}.{table}"
            " WHERE originator_id = ANY(%s::uuid[]) ORDER BY originator_id, originator_version"
        ).format(schema=schema, table=table)
        self._head_sql = SQL("SELECT coalesce(max(notification_id), 0) AS head FROM {schema}.{table}").format(
            schema=schema, table=table
        )
        self._version_sql = SQL(
            "SELECT max(originator_version) AS version FROM {schema}.{table} WHERE originator_id = %s"
        ).format(schema=schema, table=table)
        # Through the stream's (originator_id, originator_version) key: `max(notification_id)`
        # lets the planner walk the position index backwards instead, which reads the whole log
        # when the stream does not exist.
        self._position_sql = SQL(
            "SELECT notification_id AS position FROM {schema}.{table} WHERE originator_id = %s"
            " ORDER BY originator_version DESC LIMIT 1"
        ).format(schema=schema, table=table)

    def _create_table(self, curs: Cursor[DictRow]) -> None:
        """Run the create statements only when the table is not as they make it (a digest of them
        is kept as the table's comment). Every process runs this at start (`ledger up` starts API
        workers while its projectors work): `ALTER TABLE ... ADD COLUMN IF NOT EXISTS` and the
        trigger statements take the table's strongest lock even when there is nothing to change,
        and that lock request, queued behind a projector's transaction, stalled every reader
        queued behind it, the projector's own other connections included: `ledger up` hung."""
        table = f"{self.datastore.schema}.{self.events_table_name}"
        digest = hashlib.sha256(
            "\n".join(statement.as_string() for statement in self.sql_create_statements).encode()
        ).hexdigest()
        marker = f"ledger schema {digest}"
        curs.execute(
            "SELECT obj_description(to_regclass(%s), 'pg_class') AS comment", (table,), prepare=False
        )
        row = curs.fetchone()
        if row is not None and row["comment"] == marker:
            return
        super()._create_table(curs)
        curs.execute(
            SQL("COMMENT ON TABLE {schema}.{table} IS {marker}").format(
                schema=Identifier(self.datastore.schema),
                table=Identifier(self.events_table_name),
                marker=Literal(marker),
            ),
            prepare=False,
        )

    def _notify_channel(self, curs: Cursor[DictRow]) -> None:
        return None

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        """Append atomically; the positions, in order. Appends of concurrent callers share a
        transaction (`CommitGroups`): one flush of the log for all of them."""
        if not stored_events:
            return []
        events = [
            e if isinstance(e, LedgerStoredEvent) else LedgerStoredEvent(**vars(e)) for e in stored_events
        ]
        envelope = current_envelope.get()
        timers = envelope.timers if envelope is not None else {}
        return self._appends.run(_Append(events, timers))

    @property
    def appends_waiting(self) -> int:
        """Appends waiting to share the next transaction."""
        return self._appends.waiting

    def _append_group(self, appends: list[_Append]) -> list[list[int] | BaseException]:
        """Write these appends in one transaction. If that fails on a key (an append that lost a
        race for an aggregate's next version, to another of the group or to a writer elsewhere),
        each is written again on its own, so that the conflict fails its own append only."""
        if len(appends) == 1:
            return [self._append_alone(appends[0])]
        timers: dict[UUID, datetime | None] = {}
        for append in appends:
            timers.update(append.timers)  # one aggregate twice: the later decision stands
        try:
            positions = self._append([e for append in appends for e in append.events], timers)
        except IntegrityError:
            return [self._append_alone(append) for append in appends]
        answers: list[list[int] | BaseException] = []
        start = 0
        for append in appends:
            answers.append(positions[start : start + len(append.events)])
            start += len(append.events)
        return answers

    def _append_alone(self, append: _Append) -> list[int] | BaseException:
        try:
            return self._append(append.events, append.timers)
        except IntegrityError as conflict:
            return conflict

    def _append(self, events: list[LedgerStoredEvent], timers: dict[UUID, datetime | None]) -> list[int]:
        """One call of the append function (see the class docstring)."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            # Autocommit: the statement is its own transaction, so the lock ends with it; the
            # timers of the aggregates saved are written in it too.
            curs.execute(
                self._append_sql,
                (
                    [e.originator_id for e in events],
                    [e.originator_version for e in events],
                    [e.topic for e in events],
                    [e.state for e in events],
                    [e.event_type or event_type_name(e.topic) for e in events],
                    [e.occurred_at for e in events],
                    [e.customer_id for e in events],
                    [e.source for e in events],
                    [e.actor for e in events],
                    [e.correlation_id for e in events],
                    [e.causation_id for e in events],
                    [e.reason for e in events],
                    [e.schema_version for e in events],
                    list(timers),
                    list(timers.values()),
                ),
            )
            return [row["notification_id"] for row in curs.fetchall()]

    def _write_timers(self, curs: Cursor[Any], timers: dict[UUID, datetime | None]) -> None:
        due = [(aggregate_id, at) for aggregate_id, at in timers.items() if at is not None]
        never = [aggregate_id for aggregate_id, at in timers.items() if at is None]
        if due:
            curs.execute(self._set_timers_sql, ([i for i, _ in due], [at for _, at in due]))
        if never:
            curs.execute(self._clear_timers_sql, (never,))

    def set_timers(self, timers: dict[UUID, datetime | None]) -> None:
        """Set timers outside an append (an aggregate with nothing to record whose timer was stale)."""
        with self.datastore.transaction(commit=True) as curs:
            self._write_timers(curs, timers)

    def timer(self, aggregate_id: UUID) -> datetime | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._timer_sql, (aggregate_id,))
            row = curs.fetchone()
            return None if row is None else row["due_at"]

    def due_timers(self, now: datetime, limit: int) -> list[UUID]:
        """The aggregates whose next transition is due by `now`, the longest due first."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._due_timers_sql, (now, limit))
            return [row["aggregate_id"] for row in curs]

    def append_new_streams(self, rows: Sequence[NewStreamRow]) -> NewStreams:
        """Append the first event of each of these streams, skipping every stream that already
        exists (and repeats within `rows`), in one transaction under the append lock: the check
        cannot race another append, and positions still follow commit order. Used by ingest,
        where a stream id derives from the sender's idempotency key, so an existing stream is a
        resend.

        The rows are first copied (binary COPY) into a session-local staging table, without the
        lock; then one call of `<table>_append_staged` takes the lock, inserts the new rows from
        the staging table and reads the streams that existed, and the transaction commits, all in
        one round trip, so the lock is held for server-side work only."""
        if any(row.originator_version != 1 for row in rows):
            raise ValueError("append_new_streams appends version 1 of new streams only")
        first_of_each: dict[UUID, NewStreamRow] = {}
        for row in rows:
            first_of_each.setdefault(row.originator_id, row)
        # The datastore's connections are in autocommit mode: the transaction is explicit, so
        # that its COMMIT can travel in the same round trip as the statements under the lock.
        positions: dict[UUID, int] = {}
        existing: dict[UUID, tuple[int, bytes]] = {}
        with (
            self.datastore.get_connection() as conn,
            conn.cursor() as curs,
            conn.cursor(row_factory=tuple_row) as appended,
        ):
            try:
                with conn.pipeline():
                    curs.execute("BEGIN")
                    curs.execute(self._staging_sql)
                with curs.copy(self._copy_staging_sql) as copy:
                    copy.set_types(("int4", *COPY_TYPES))
                    for ordinal, row in enumerate(first_of_each.values()):
                        copy.write_row((ordinal, *row))
                with conn.pipeline():
                    appended.execute(self._append_staged_sql)
                    conn.execute("COMMIT")
                for stream, position, first_state in appended:
                    if first_state is None:
                        positions[stream] = position
                    else:
                        existing[stream] = (position, bytes(first_state))
            except BaseException:
                if not conn.closed:
                    conn.execute("ROLLBACK")
                raise
        return NewStreams(positions=positions, existing=existing)

    def existing_streams(self, stream_ids: Sequence[UUID]) -> dict[UUID, tuple[int, bytes]]:
        """The position and state of the first event of each of these streams that exists."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._existing_streams_sql, (list(stream_ids),), prepare=True)
            return {row["originator_id"]: (row["notification_id"], bytes(row["state"])) for row in curs}

    def event_types_of(self, stream_ids: Sequence[UUID], event_types: Sequence[str]) -> dict[UUID, set[str]]:
        """Which of `event_types` each of these streams holds (streams holding none are absent)."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._event_types_sql, (list(stream_ids), list(event_types)), prepare=True)
            return {row["originator_id"]: set(row["types"]) for row in curs}

    def stream_version(self, stream_id: UUID) -> int:
        """The version of a stream's last event, 0 if it has none."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._version_sql, (stream_id,))
            row = curs.fetchone()
            return int(row["version"] or 0) if row else 0

    def usage_records(
        self,
        customer_id: UUID,
        *,
        start: datetime = datetime(1, 1, 1, tzinfo=UTC),
        end: datetime = datetime(9999, 1, 1, tzinfo=UTC),
        changed_after: int = 0,
        up_to: int | None = None,
    ) -> list[tuple[UUID, int, datetime, str, str, int]]:
        """(record id, position, occurred_at, metric, current value, position of its last change)
        of a customer's usage records that occurred in [start, end) and were recorded or corrected
        after position `changed_after` (as the log stood at position `up_to`, if given)."""
        rows = self.usage_records_of(
            [customer_id], start=start, end=end, changed_after=changed_after, up_to=up_to
        )
        return [row[1:] for row in rows]

    def usage_records_of(
        self,
        customer_ids: Sequence[UUID],
        *,
        start: datetime,
        end: datetime,
        changed_after: int = 0,
        up_to: int | None = None,
    ) -> list[tuple[UUID, UUID, int, datetime, str, str, int]]:
        """`usage_records` of several customers at once, each row led by its customer."""
        params = {
            "customers": list(customer_ids),
            "start": start,
            "end": end,
            "after": changed_after,
            "upto": up_to if up_to is not None else 2**62,
        }
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._usage_sql, params, prepare=True)
            return [
                (
                    row["customer_id"],
                    row["originator_id"],
                    row["notification_id"],
                    row["occurred_at"],
                    row["metric"],
                    row["value"],
                    row["changed_at"],
                )
                for row in curs
            ]

    def subscriptions_of(self, customer_id: UUID) -> list[UUID]:
        """A customer's subscriptions, oldest first."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._subscriptions_sql, (customer_id,))
            return [row["originator_id"] for row in curs]

    def position_at(self, known_at: datetime) -> int:
        """The last position recorded at or before `known_at` (0 when none): from the kept walk
        of the log (infra/recorded_positions.py), else by a scan back from the head."""
        with self.datastore.transaction(commit=True) as curs:
            found = None
            if self.events_table_name == recorded_positions.EVENTS_TABLE:
                found = recorded_positions.position_at(curs.connection, self.datastore.schema, known_at)
            if found is not None:
                return found
            curs.execute(self._position_at_sql, (known_at,))
            row = curs.fetchone()
            return int(row["notification_id"]) if row else 0

    def version_at(self, stream_id: UUID, position: int) -> int:
        """The version a stream had once the log reached `position` (0: it did not exist yet)."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._version_at_sql, (stream_id, position))
            row = curs.fetchone()
            return int(row["version"] or 0) if row else 0

    def load_aggregates(self, stream_ids: Sequence[UUID], mapper: Mapper[UUID]) -> dict[UUID, Any]:
        """Many aggregates at once, each rebuilt from all its events (one query for them all)."""
        if not stream_ids:
            return {}
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._load_many_sql, (list(stream_ids),))
            rows = curs.fetchall()
        aggregates: dict[UUID, Any] = {}
        for row in rows:
            stored = StoredEvent(
                originator_id=row["originator_id"],
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=bytes(row["state"]),
            )
            event = mapper.to_domain_event(stored)
            aggregates[row["originator_id"]] = event.mutate(aggregates.get(row["originator_id"]))  # type: ignore[attr-defined]
        return aggregates

    def head(self) -> int:
        """The position of the last stored event (0 when none)."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._head_sql)
            row = curs.fetchone()
            return int(row["head"]) if row else 0

    def position_of(self, stream_id: UUID) -> int | None:
        """The position of the last stored event of a stream."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._position_sql, (stream_id,))
            row = curs.fetchone()
            return None if row is None else row["position"]
