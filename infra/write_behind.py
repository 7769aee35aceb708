"""Write-behind: a writer that alone writes the streams it makes (`ledger simulate` writing a
history of customers of its own) keeps its appends in memory and sends them to PostgreSQL in large
batches, one COPY and one transaction for thousands of commands, instead of one round trip (or
several) per command.

Within `WriteBatch.active()` (this thread or task only):
- appends are held in the batch, in order, with the clock's timers of the aggregates saved;
- what the use cases read back is answered from the batch: the aggregates saved or read since
  the caller last released them (`WriteBehindRepository`), the log's head and each stream's last
  version and position as they will be once the batch is written (positions predicted from the
  head: the identity sequence has no gap while one writer appends), and no usage records for a
  customer registered in the batch (nothing can be recorded for a customer that no other writer
  can see yet);
- any other read of the store writes the batch first, then reads.
`flush()` writes everything held in one transaction under the append lock: what the log and the
timers hold afterwards is what the same commands, appended one by one, would have left. A stream
another writer appended to meanwhile makes the flush fail whole (IntegrityError), nothing written:
the caller runs its commands again on what is stored."""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg.errors
from eventsourcing.application import AggregateNotFoundError, Repository
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Mapper, StoredEvent
from psycopg.sql import SQL, Identifier

from infra.eventstore import COPY_TYPES, LedgerRecorder, LedgerStoredEvent, NewStreamRow, current_envelope

_current: contextvars.ContextVar[WriteBatch | None] = contextvars.ContextVar("write_batch", default=None)
CUSTOMER_REGISTERED = "Customer.Registered"
USAGE_EVENT_PREFIX = "UsageRecord."


def current_batch() -> WriteBatch | None:
    return _current.get()


class NeedsTheStore(RuntimeError):
    """A detached batch was asked something only the store knows, or to write."""


@dataclass(frozen=True)
class Detached:
    """How a detached batch stands in for a store it never reads nor writes: the head it
    pretends the log has, and the versions it pretends some streams have. Its events are taken
    (`WriteBatch.take`) by whoever relocates them onto the real log's head and versions: a worker
    process simulating customers for another that writes them."""

    head: int
    versions: dict[UUID, int] = field(default_factory=dict)


@dataclass
class WriteBatch:
    """The appends held for one writer, and what it needs to answer as if they were written."""

    recorder: WriteBehindRecorder
    head: int = 0  # the log's head when the batch was last written
    events: list[NewStreamRow] = field(default_factory=list)
    timers: dict[UUID, datetime | None] = field(default_factory=dict)
    # Each stream appended to in the batch: its last version, and the index of its last event.
    versions: dict[UUID, int] = field(default_factory=dict)
    last_index: dict[UUID, int] = field(default_factory=dict)
    stored_versions: dict[UUID, int] = field(default_factory=dict)  # read from the store since the flush
    # The latest state of every aggregate saved or read since the caller last released them.
    aggregates: dict[UUID, Aggregate] = field(default_factory=dict)
    # Streams the caller found absent from the store (another writer creating one makes the flush
    # fail): a look-up of them needs no query.
    absent: set[UUID] = field(default_factory=set)
    new_customers: set[UUID] = field(default_factory=set)
    holds_usage: bool = False
    detached: Detached | None = None
    flushes: int = 0
    written: int = 0

    @contextmanager
    def active(self) -> Iterator[WriteBatch]:
        """Hold this context's appends in the batch; on leaving, write what is held (not when
        the block fails: its commands are then as if never run; never when detached)."""
        self._clear()
        token = _current.set(self)
        try:
            yield self
            if self.detached is None:
                self.flush()
        finally:
            _current.reset(token)

    def __len__(self) -> int:
        return len(self.events)

    # ------------------------------------------------------------------ holding

    def hold(self, events: Sequence[NewStreamRow], timers: dict[UUID, datetime | None]) -> list[int]:
        """Keep these events (and timers) for the next flush; their predicted positions."""
        first = len(self.events)
        self.events.extend(events)
        # One pass (a command holds two or three events: the generators cost more than the work).
        versions, last_index, absent = self.versions, self.last_index, self.absent
        for index, e in enumerate(events, start=first):
            stream, version = e.originator_id, e.originator_version
            versions[stream] = version
            last_index[stream] = index
            if version == 1:
                absent.discard(stream)
                if e.event_type == CUSTOMER_REGISTERED:
                    self.new_customers.add(stream)
                    continue
            if e.event_type.startswith(USAGE_EVENT_PREFIX):
                self.holds_usage = True
        if timers:
            self.timers.update(timers)
        return list(range(self.head + first + 1, self.head + len(self.events) + 1))

    def keep(self, aggregates: Mapping[UUID, object]) -> None:
        self.aggregates.update((i, a) for i, a in aggregates.items() if isinstance(a, Aggregate))

    def forget_changed(self) -> None:
        """A command failed: aggregates it changed and did not save hold changes that never
        happened; they are read again (after a flush) when next asked for."""
        for aggregate_id in [i for i, a in self.aggregates.items() if a.pending_events]:
            del self.aggregates[aggregate_id]

    def holds(self, stream_id: UUID) -> bool:
        return stream_id in self.versions

    # ------------------------------------------------------------------ answering as if written

    def stream_version(self, stream_id: UUID) -> int | None:
        known = self.versions.get(stream_id, self.stored_versions.get(stream_id))
        if known is None and self.detached is not None:
            raise NeedsTheStore(f"the version of stream {stream_id}")
        return known

    def position_of(self, stream_id: UUID) -> int | None:
        index = self.last_index.get(stream_id)
        return None if index is None else self.head + index + 1

    def predicted_head(self) -> int:
        return self.head + len(self.events)

    # ------------------------------------------------------------------ writing

    def flush(self) -> None:
        """Write what is held, in one transaction; the batch starts again empty. The aggregates
        it knows stay known (they are what was just written): see `release`."""
        if self.detached is not None:
            raise NeedsTheStore("a detached batch is taken, never written")
        if self.events or self.timers:
            self.recorder.append_batch(self.events, self.timers)
            self.written += len(self.events)
            self.flushes += 1
        self._clear()

    def take(self) -> tuple[list[NewStreamRow], dict[UUID, datetime | None]]:
        """What a detached batch holds (its events, its timers); it starts again empty."""
        taken = self.events, self.timers
        self._clear()
        return taken

    def release(self, keep: Callable[[Aggregate], bool] | None = None) -> None:
        """Forget the aggregates known (but those `keep` says), to bound memory: only between
        commands (a command holds its aggregates, and must not be handed another copy of one)."""
        self.aggregates = {i: a for i, a in self.aggregates.items() if keep(a)} if keep else {}

    def discard(self) -> None:
        """Drop what is held (its flush failed) and what was known: the caller runs its commands
        again on what is stored."""
        self._clear()
        self.release()

    def _clear(self) -> None:
        self.events = []
        self.timers = {}
        self.versions = {}
        self.last_index = {}
        self.new_customers = set()
        self.holds_usage = False
        if self.detached is None:
            self.stored_versions = {}
            self.head = self.recorder.stored_head()
        else:
            self.stored_versions = dict(self.detached.versions)
            self.head = self.detached.head


class WriteBehindRepository(Repository[UUID]):
    """The library's repository; within a write batch, aggregates saved or read since they were
    last released are answered from memory (the same object: a command that fails makes the batch forget
    what it changed, see `WriteBatch.forget_changed`)."""

    def get(self, aggregate_id: UUID, *, version: int | None = None, **kwargs: Any) -> Any:
        batch = _current.get()
        if batch is None or version is not None:
            return super().get(aggregate_id, version=version, **kwargs)
        found = batch.aggregates.get(aggregate_id)
        if found is not None:
            return found
        if aggregate_id in batch.absent:
            raise AggregateNotFoundError(aggregate_id)
        if batch.holds(aggregate_id):
            batch.flush()  # forgotten after a failed command: its saved state is in the batch
        aggregate = super().get(aggregate_id, **kwargs)
        batch.aggregates[aggregate_id] = aggregate
        return aggregate


class WriteBehindRecorder(LedgerRecorder):
    """The ledger's recorder, able to hold appends in a `WriteBatch` (see the module docstring);
    outside one it is the `LedgerRecorder` unchanged."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        schema = Identifier(self.datastore.schema)
        table = Identifier(self.events_table_name)
        staging = Identifier(f"{self.events_table_name}_staged")
        columns = SQL(
            "originator_id, originator_version, topic, state, event_type, occurred_at, customer_id, "
            "source, actor, correlation_id, causation_id, reason, schema_version"
        )
        self._insert_batch_sql = SQL(
            "WITH inserted AS (INSERT INTO {schema}.{table} ({columns}) SELECT {columns} FROM {staging} "
            "ORDER BY ordinal RETURNING notification_id) "
            "SELECT max(notification_id) AS last FROM inserted"
        ).format(schema=schema, table=table, columns=columns, staging=staging)

        self._analyze_sql = SQL("ANALYZE {schema}.{table}, {schema}.ledger_timers").format(
            schema=schema, table=table
        )

    def batch(self, detached: Detached | None = None) -> WriteBatch:
        return WriteBatch(self, detached=detached)

    def _settled(self) -> None:
        """A read the batch cannot answer: write it first (a detached batch cannot)."""
        batch = _current.get()
        if batch is None or batch.recorder is not self:
            return
        if batch.detached is not None:
            raise NeedsTheStore("a read of the store")
        if batch.events or batch.timers:
            batch.flush()

    # ------------------------------------------------------------------ appends

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        batch = _current.get()
        if batch is None or batch.recorder is not self:
            positions: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
            return positions
        events = [
            NewStreamRow.of(e if isinstance(e, LedgerStoredEvent) else LedgerStoredEvent(**vars(e)))
            for e in stored_events
        ]
        envelope = current_envelope.get()
        return batch.hold(events, envelope.timers if envelope is not None else {})

    def set_timers(self, timers: dict[UUID, datetime | None]) -> None:
        batch = _current.get()
        if batch is None or batch.recorder is not self:
            super().set_timers(timers)
        else:
            batch.timers.update(timers)

    def append_batch(self, events: Sequence[NewStreamRow], timers: dict[UUID, datetime | None]) -> int:
        """Append these events, in order, and set these timers, in one transaction: the rows are
        copied (binary COPY) into the session's staging table without the lock, then inserted
        under it with the timers and committed in one round trip. The position of the last event
        (0 if none)."""
        if not events:
            if timers:
                self.set_timers(timers)
            return 0
        with self.datastore.get_connection() as conn, conn.cursor() as curs, conn.cursor() as inserted:
            try:
                with conn.pipeline():
                    curs.execute("BEGIN")
                    curs.execute(self._staging_sql)
                with curs.copy(self._copy_staging_sql) as copy:
                    copy.set_types(("int4", *COPY_TYPES))
                    for ordinal, e in enumerate(events):
                        copy.write_row((ordinal, *e))
                with conn.pipeline():
                    self._lock_table(curs)
                    inserted.execute(self._insert_batch_sql)
                    self._write_timers(curs, timers)
                    conn.execute("COMMIT")
                row = inserted.fetchone()
            except psycopg.errors.IntegrityError as conflict:
                if not conn.closed:
                    conn.execute("ROLLBACK")
                raise IntegrityError(conflict) from conflict
            except BaseException:
                if not conn.closed:
                    conn.execute("ROLLBACK")
                raise
        return int(row["last"] or 0) if row else 0

    # ------------------------------------------------------------------ reads answered by the batch

    def analyze(self) -> None:
        """Refresh the planner's statistics of the events and timers tables (after a bulk load)."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._analyze_sql)

    def stored_head(self) -> int:
        return super().head()

    def head(self) -> int:
        batch = _current.get()
        if batch is None or batch.recorder is not self:
            return super().head()
        return batch.predicted_head()

    def stream_version(self, stream_id: UUID) -> int:
        batch = _current.get()
        if batch is None or batch.recorder is not self:
            return super().stream_version(stream_id)
        known = batch.stream_version(stream_id)
        if known is None:
            known = batch.stored_versions[stream_id] = super().stream_version(stream_id)
        return known

    def position_of(self, stream_id: UUID) -> int | None:
        batch = _current.get()
        if batch is None or batch.recorder is not self:
            return super().position_of(stream_id)
        predicted = batch.position_of(stream_id)
        return predicted if predicted is not None else super().position_of(stream_id)

    def usage_records_of(
        self, customer_ids: Sequence[UUID], **kwargs: Any
    ) -> list[tuple[UUID, UUID, int, datetime, str, str, int]]:
        batch = _current.get()
        if batch is not None and batch.recorder is self:
            if not batch.holds_usage and all(c in batch.new_customers for c in customer_ids):
                return []  # no other writer can see these customers yet
            self._settled()
        return super().usage_records_of(customer_ids, **kwargs)

    # ------------------------------------------------------------------ reads that need the batch written

    def timer(self, aggregate_id: UUID) -> datetime | None:
        self._settled()
        return super().timer(aggregate_id)

    def due_timers(self, now: datetime, limit: int) -> list[UUID]:
        self._settled()
        return super().due_timers(now, limit)

    def existing_streams(self, stream_ids: Sequence[UUID]) -> dict[UUID, tuple[int, bytes]]:
        self._settled()
        return super().existing_streams(stream_ids)

    def event_types_of(self, stream_ids: Sequence[UUID], event_types: Sequence[str]) -> dict[UUID, set[str]]:
        self._settled()
        return super().event_types_of(stream_ids, event_types)

    def subscriptions_of(self, customer_id: UUID) -> list[UUID]:
        self._settled()
        return super().subscriptions_of(customer_id)

    def position_at(self, known_at: datetime) -> int:
        self._settled()
        return super().position_at(known_at)

    def version_at(self, stream_id: UUID, position: int) -> int:
        self._settled()
        return super().version_at(stream_id, position)

    def load_aggregates(self, stream_ids: Sequence[UUID], mapper: Mapper[UUID]) -> dict[UUID, Any]:
        self._settled()
        return super().load_aggregates(stream_ids, mapper)

    def select_events(self, originator_id: Any, *args: Any, **kwargs: Any) -> Any:
        batch = _current.get()
        if batch is not None and batch.holds(UUID(str(originator_id))):
            self._settled()
        return super().select_events(originator_id, *args, **kwargs)

    def select_notifications(self, *args: Any, **kwargs: Any) -> Any:
        self._settled()
        return super().select_notifications(*args, **kwargs)

    def max_notification_id(self) -> int | None:
        self._settled()
        head: int | None = super().max_notification_id()
        return head

    def append_new_streams(self, rows: Sequence[NewStreamRow]) -> Any:
        self._settled()
        return super().append_new_streams(rows)


class NotWritten(Exception):
    """An append handed to an `AppendPipeline` after one that failed: never sent."""


class AppendPipeline:
    """Appends handed over in order and written one after another by a thread of their own, while
    the caller prepares the next (the ledger's clock billing a day: the next batch of invoices is
    computed while the last is being written). Once one fails the rest are not written: each may
    continue what the one before it began (its invoice numbers)."""

    def __init__(self, recorder: WriteBehindRecorder) -> None:
        self.recorder = recorder
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="ledger-append")
        self._failed = False
        self._pending: list[tuple[Any, Future[int]]] = []
        self._written: list[int] = []
        self._not_written: list[tuple[Any, BaseException]] = []
        self.customers: set[UUID] = set()  # customers of the appends in flight

    def __enter__(self) -> AppendPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.wait()
        self._executor.shutdown(wait=True)

    def submit(
        self,
        key: Any,
        rows: Sequence[NewStreamRow],
        timers: dict[UUID, datetime | None],
        customers: set[UUID],
    ) -> None:
        """Hand over an append; `key` names it among those not written (`results`)."""
        self.customers |= customers
        self._pending.append((key, self._executor.submit(self._append, rows, timers)))

    def _append(self, rows: Sequence[NewStreamRow], timers: dict[UUID, datetime | None]) -> int:
        if self._failed:
            raise NotWritten("an append before it failed")
        try:
            return self.recorder.append_batch(rows, timers)
        except BaseException:
            self._failed = True
            raise

    def wait(self) -> None:
        """Until every append handed over is written or failed."""
        for key, future in self._pending:
            try:
                self._written.append(future.result())
            except Exception as failure:  # noqa: BLE001 - kept for `results`, the caller decides
                self._not_written.append((key, failure))
        self._pending = []
        self._failed = False
        self.customers = set()

    def results(self) -> tuple[list[int], list[tuple[Any, BaseException]]]:
        """Once all is written: the last position of each append written, and what was not
        written (its key, why); both start again empty."""
        self.wait()
        written, not_written = self._written, self._not_written
        self._written, self._not_written = [], []
        return written, not_written
