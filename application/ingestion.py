"""Ingest use cases: CloudEvents from SaaS systems, exactly once.

The idempotency key of an event is (source, id), permanent, and checked in the same transaction
as the append: every ingested event owns a stream whose id is derived from that key
(`ids.ingested_event_id`) and whose first event is written in the append that records what the
event caused. For `usage.recorded` that stream is the UsageRecord itself; for the other types it
is an `IngestRecord` saved beside the changed aggregate. A resend finds the stream and answers
`duplicate`, or `rejected` (conflict) when its content hash differs.

Usage measurements are most of the volume, so they take a fast path: their stored rows are built
directly (the same JSON the mapper writes for `UsageRecord.Recorded`, checked by the tests) and
appended with `LedgerRecorder.append_new_streams`, which skips, under the append lock, every
stream that already exists. Everything else goes through the aggregates one event at a time."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple
from uuid import UUID

import orjson
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic

from application.idempotency import IngestRecord
from application.ledger import Ledger
from domain import ids
from domain.base import LedgerAggregate
from domain.business_time import check_business_time
from domain.customer import Customer
from domain.errors import DomainError, InvalidValue
from domain.usage import UsageRecord, check_metric, normalize_usage_value
from infra.eventstore import (
    Envelope,
    LedgerStoredEvent,
    NewStreamRow,
    current_envelope,
    event_type_name,
)

ACCEPTED, DUPLICATE, REJECTED = "accepted", "duplicate", "rejected"
SOURCE = "ingest"
MAX_ATTEMPTS = 8

USAGE_RECORD_TOPIC = get_topic(UsageRecord)
USAGE_RECORDED_TOPIC = f"{USAGE_RECORD_TOPIC}.Recorded"  # the topic of `UsageRecord.Recorded`
USAGE_RECORDED_TYPE = event_type_name(USAGE_RECORDED_TOPIC)
CUSTOMER_REGISTERED = "Customer.Registered"
USAGE_VALUE_TYPES = (int, float, str, Decimal)  # a tuple: `int | float` would be rebuilt per call
MAX_REMEMBERED_CUSTOMERS = 1_000_000


# ---------------------------------------------------------------------------- commands
# Commands, keys and results are named tuples: immutable, and made once per event of every batch
# at a fraction of a frozen dataclass's cost (which sets each field through object.__setattr__).


class EventKey(NamedTuple):
    """Where an event was in its request, and its permanent idempotency key."""

    index: int  # type: ignore[assignment]  # (shadows tuple.index, which nothing calls)
    source: str
    event_id: str
    content_hash: str
    stream_id: UUID  # ids.ingested_event_id(source, event_id)
    # The fingerprint of the event as represented when sent, which events recorded before the
    # canonical fingerprint carry: computed only if a resend's canonical one does not match.
    sent_hash: Callable[[], str] | None = None

    @classmethod
    def of(
        cls,
        index: int,
        source: str,
        event_id: str,
        content_hash: str,
        sent_hash: Callable[[], str] | None = None,
    ) -> EventKey:
        return cls(index, source, event_id, content_hash, ids.ingested_event_id(source, event_id), sent_hash)


class RecordUsage(NamedTuple):
    key: EventKey
    customer_id: UUID
    external_id: str | None
    metric: Any
    value: Any
    properties: Any
    occurred_at: datetime | None


class CorrectUsage(NamedTuple):
    key: EventKey
    customer_id: UUID
    corrects: str
    value: Any
    occurred_at: datetime | None


class UpsertCustomer(NamedTuple):
    """`customer.created` registers (or brings an existing customer up to date);
    `customer.updated` changes an existing one."""

    key: EventKey
    customer_id: UUID
    external_id: str | None
    create: bool
    email: str | None = None
    name: str | None = None
    currency: str | None = None
    tax_rate_bps: int | None = None
    metadata: dict[str, Any] | None = None
    occurred_at: datetime | None = None


IngestCommand = RecordUsage | CorrectUsage | UpsertCustomer


class EventResult(NamedTuple):
    index: int  # type: ignore[assignment]  # (shadows tuple.index, which nothing calls)
    id: str
    status: str
    position: int | None = None
    code: str | None = None
    reason: str | None = None
    field: str | None = None  # the part of the event at fault, where one is

    @classmethod
    def rejected(cls, key: EventKey, code: str, reason: str, field: str | None = None) -> EventResult:
        return cls(key.index, key.event_id, REJECTED, code=code, reason=reason, field=field)

    @classmethod
    def refused(cls, key: EventKey, refused: DomainError) -> EventResult:
        """The answer to an event a rule refused, naming the field and the rule's code."""
        reason = refused.message
        if refused.field and not reason.startswith(refused.field):
            reason = f"{refused.field}: {reason}"
        return cls.rejected(key, refused.code, reason, refused.field)


@dataclass(frozen=True)
class IngestContext:
    actor: str | None
    correlation_id: UUID | None
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))


# ---------------------------------------------------------------------------- fast path


class PreparedUsage(NamedTuple):
    """A usage measurement that passed its checks, with the stored row that records it."""

    command: RecordUsage
    row: NewStreamRow


def occurred_at_of(event_time: datetime | None, now: datetime) -> datetime:
    """When an ingested event happened: its `time`, which must lie in the business-time window
    (else TimeOutOfRange: nothing is recorded in the future, nor before 2000), or the ledger's now."""
    return now if event_time is None else check_business_time(event_time, now, "time")


def prepare_usage(cmd: RecordUsage, ctx: IngestContext, now: datetime) -> PreparedUsage | EventResult:
    """Check a measurement as `UsageRecord.record` does and build the row the mapper would store
    for its `Recorded` event, without the per-event cost of the aggregate machinery. `now` is the
    ledger's now, which the event's time may not pass."""
    try:
        occurred_at = occurred_at_of(cmd.occurred_at, now)
        metric = check_metric(cmd.metric)
        if isinstance(cmd.value, bool) or not isinstance(cmd.value, USAGE_VALUE_TYPES):
            raise InvalidValue("a usage value is a number or a decimal string", field="value")
        value = normalize_usage_value(cmd.value)
        if not isinstance(cmd.properties, dict):
            raise InvalidValue("properties is a JSON object", field="properties")
    except DomainError as refused:
        return EventResult.refused(cmd.key, refused)
    state = {
        "timestamp": ctx.received_at,
        "originator_topic": USAGE_RECORD_TOPIC,
        "customer_id": cmd.customer_id,
        "metric": metric,
        "value": value,
        "idempotency_key": cmd.key.event_id,
        "properties": cmd.properties,
        "occurred_at": occurred_at,
        "source": cmd.key.source,
        "content_hash": cmd.key.content_hash,
    }
    try:
        payload = orjson.dumps(state)
    except TypeError:
        return EventResult.rejected(cmd.key, "invalid_value", "properties hold a value JSON cannot keep")
    row = NewStreamRow(
        cmd.key.stream_id,
        1,
        USAGE_RECORDED_TOPIC,
        payload,
        USAGE_RECORDED_TYPE,
        occurred_at,
        cmd.customer_id,
        SOURCE,
        ctx.actor,
        ctx.correlation_id,
        None,
        None,
        1,
    )
    return PreparedUsage(cmd, row)


def _stored_hash(state: bytes) -> str | None:
    found = orjson.loads(state).get("content_hash")
    return found if isinstance(found, str) else None


def _resend(key: EventKey, position: int, state: bytes) -> EventResult:
    """The answer to an event whose key is already in the log."""
    stored = _stored_hash(state)
    if stored == key.content_hash or (key.sent_hash is not None and stored == key.sent_hash()):
        return EventResult(key.index, key.event_id, DUPLICATE, position=position)
    return EventResult.rejected(
        key,
        "conflict",
        f"event id '{key.event_id}' from this source was already recorded with another content",
    )


class Ingestion:
    """The ingest use cases. `append_usage` is also the group committer's work: it takes the
    measurements of any number of requests and records them in one transaction."""

    def __init__(self, ledger: Ledger, *, auto_create_customers: bool, default_currency: str) -> None:
        self.ledger = ledger
        self.auto_create_customers = auto_create_customers
        self.default_currency = default_currency
        self._registered: set[UUID] = set()

    # ------------------------------------------------------------------ entry point

    def ingest(
        self,
        commands: Sequence[IngestCommand],
        ctx: IngestContext,
        *,
        append: Callable[[list[PreparedUsage]], list[EventResult]] | None = None,
    ) -> list[EventResult]:
        """Record the events in order: runs of measurements at once, other events one by one
        (a measurement may follow the customer.created it needs, a correction what it corrects).
        `append` records prepared measurements (default: at once; the API passes the group
        committer). Returns one result per command, in order."""
        append = append or self.append_usage
        now = self.ledger.now()
        results: list[EventResult] = []
        run: list[PreparedUsage] = []
        for cmd in commands:
            if isinstance(cmd, RecordUsage):
                prepared = prepare_usage(cmd, ctx, now)
                if isinstance(prepared, EventResult):
                    results.append(prepared)
                else:
                    run.append(prepared)
                continue
            if run:
                results.extend(append(run))
                run = []
            results.append(self._one(cmd, ctx, now))
        if run:
            results.extend(append(run))
        results.sort(key=lambda r: r.index)
        return results

    def submit_usage(
        self,
        commands: Sequence[IngestCommand],
        ctx: IngestContext,
        submit: Callable[[list[PreparedUsage]], Future[list[EventResult]]],
    ) -> Future[list[EventResult]] | None:
        """When every command is a measurement (the common case), check them and hand them to
        `submit` (the group committer) without waiting: the returned future resolves, after the
        commit, to one result per command in order. None if some command needs `ingest`."""
        usage = [cmd for cmd in commands if isinstance(cmd, RecordUsage)]
        if len(usage) != len(commands):
            return None
        now = self.ledger.now()
        rejected: list[EventResult] = []
        prepared: list[PreparedUsage] = []
        for cmd in usage:
            outcome = prepare_usage(cmd, ctx, now)
            if isinstance(outcome, EventResult):
                rejected.append(outcome)
            else:
                prepared.append(outcome)
        answer: Future[list[EventResult]] = Future()
        if not prepared:
            answer.set_result(rejected)
            return answer

        def merge(appended: Future[list[EventResult]]) -> None:
            failure = appended.exception()
            if failure is not None:
                answer.set_exception(failure)
            else:
                answer.set_result(sorted([*rejected, *appended.result()], key=lambda r: r.index))

        submit(prepared).add_done_callback(merge)
        return answer

    # ------------------------------------------------------------------ measurements

    def append_usage(self, items: list[PreparedUsage]) -> list[EventResult]:
        """Check the customers of all items with one query, then append every measurement whose
        key is new in one transaction. Results are in the order of `items`."""
        results: dict[int, EventResult] = {}
        store = self.ledger.store
        known = self._existing_customers({i.command.customer_id for i in items})
        first: dict[UUID, int] = {}  # stream id -> position in items of its first occurrence
        rows: list[NewStreamRow] = []
        created: set[UUID] = set()
        for n, item in enumerate(items):
            cmd = item.command
            if cmd.customer_id not in known:
                external_id = cmd.external_id
                if not (self.auto_create_customers and external_id):
                    results[n] = EventResult.rejected(
                        cmd.key,
                        "unknown_customer",
                        f"no customer with external_id '{cmd.external_id}'"
                        if cmd.external_id
                        else f"no customer with id {cmd.customer_id}",
                    )
                    continue
                if cmd.customer_id not in created:
                    created.add(cmd.customer_id)
                    rows.extend(self._auto_created_customer(external_id, cmd, item.row))
            if cmd.key.stream_id in first:
                continue  # answered after the append, against the first occurrence
            first[cmd.key.stream_id] = n
            rows.append(item.row)
        outcome = store.append_new_streams(rows) if rows else None
        appended = outcome.positions if outcome is not None else {}
        existing = outcome.existing if outcome is not None else {}
        for n, item in enumerate(items):
            if n in results:
                continue
            key = item.command.key
            stream = key.stream_id
            if stream in existing:  # sent before this append
                results[n] = _resend(key, *existing[stream])
            elif first[stream] == n:
                results[n] = EventResult(key.index, key.event_id, ACCEPTED, appended[stream])
            else:  # a repeat, within these items, of a key appended just now
                results[n] = _resend(key, appended[stream], items[first[stream]].row.state)
        return [results[n] for n in range(len(items))]

    def _existing_customers(self, customer_ids: set[UUID]) -> set[UUID]:
        """Which of these customers are registered. A registration is never undone, so what
        was found once is remembered (per process) and only new ids are looked up. (Usage of an
        archived customer is still recorded: it happened, and may be late.)"""
        unknown = customer_ids - self._registered
        if unknown:
            found = self.ledger.store.event_types_of(list(unknown), [CUSTOMER_REGISTERED])
            if len(self._registered) + len(found) > MAX_REMEMBERED_CUSTOMERS:
                self._registered.clear()
            self._registered.update(found)
        return customer_ids & self._registered

    def _auto_created_customer(
        self, external_id: str, cmd: RecordUsage, usage_row: NewStreamRow
    ) -> list[NewStreamRow]:
        """The settings allow it: register the unknown customer of a measurement."""
        customer = Customer.register(
            external_id=external_id,
            email="unknown@customers.invalid",
            name=external_id,
            currency=self.default_currency,
            tax_rate_bps=0,
            metadata={"created_by": "ingest", "source": cmd.key.source},
            occurred_at=usage_row.occurred_at or datetime.now(UTC),
        )
        envelope = Envelope(
            source=SOURCE,
            actor=usage_row.actor,
            correlation_id=usage_row.correlation_id,
            causation_id=cmd.key.stream_id,
            reason="usage for an unknown customer (auto-creation is on)",
            customers={customer.id: customer.id},
        )
        token = current_envelope.set(envelope)
        try:
            stored = [self.ledger.mapper.to_stored_event(e) for e in customer.collect_events()]
        finally:
            current_envelope.reset(token)
        return [NewStreamRow.of(e) for e in stored if isinstance(e, LedgerStoredEvent)]

    # ------------------------------------------------------------------ other events

    def _one(self, cmd: CorrectUsage | UpsertCustomer, ctx: IngestContext, now: datetime) -> EventResult:
        key = cmd.key
        for _ in range(MAX_ATTEMPTS):
            found = self.ledger.store.existing_streams([key.stream_id])
            if key.stream_id in found:
                return _resend(key, *found[key.stream_id])
            try:
                return self._apply(cmd, ctx, occurred_at_of(cmd.occurred_at, now))
            except DomainError as refused:
                return EventResult.refused(key, refused)
            except IntegrityError:
                continue  # a concurrent append: look again
        return EventResult.rejected(
            key, "concurrent_change", "the customer kept changing; send the event again"
        )

    def _apply(
        self, cmd: CorrectUsage | UpsertCustomer, ctx: IngestContext, occurred_at: datetime
    ) -> EventResult:
        target: LedgerAggregate | None
        if isinstance(cmd, CorrectUsage):
            target = self._correct(cmd, occurred_at)
            event_type = "usage.corrected"
        else:
            target = self._upsert_customer(cmd, occurred_at)
            event_type = "customer.created" if cmd.create else "customer.updated"
        record = IngestRecord(
            id=cmd.key.stream_id,
            source=cmd.key.source,
            event_id=cmd.key.event_id,
            event_type=event_type,
            content_hash=cmd.key.content_hash,
            resource_id=str(target.id),
            customer_id=cmd.customer_id,
            occurred_at=occurred_at,
        )
        envelope = Envelope(
            source=SOURCE,
            actor=ctx.actor,
            correlation_id=ctx.correlation_id,
            causation_id=record.id,
            customers={target.id: target.owner_customer_id, record.id: cmd.customer_id},
        )
        token = current_envelope.set(envelope)
        try:
            recordings = self.ledger.save(target, record)
        finally:
            current_envelope.reset(token)
        position = max(r.notification.id for r in recordings)
        return EventResult(cmd.key.index, cmd.key.event_id, ACCEPTED, position=position)

    def _find(self, aggregate_id: UUID) -> Any:
        try:
            return self.ledger.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None

    def _correct(self, cmd: CorrectUsage, occurred_at: datetime) -> UsageRecord:
        record = self._find(ids.usage_record_id(cmd.key.source, cmd.corrects))
        if not isinstance(record, UsageRecord):
            raise IngestRefused(
                "unknown_usage", f"no usage event '{cmd.corrects}' from this source to correct"
            )
        if record.customer_id != cmd.customer_id:
            raise IngestRefused("unknown_usage", f"usage event '{cmd.corrects}' belongs to another customer")
        if isinstance(cmd.value, bool) or not isinstance(cmd.value, USAGE_VALUE_TYPES):
            raise InvalidValue("a usage value is a number or a decimal string", field="value")
        record.correct(value=str(cmd.value), correction_key=cmd.key.event_id, occurred_at=occurred_at)
        return record

    def _upsert_customer(self, cmd: UpsertCustomer, occurred_at: datetime) -> Customer:
        customer = self._find(cmd.customer_id)
        if customer is not None and not isinstance(customer, Customer):
            raise IngestRefused("unknown_customer", f"no customer with id {cmd.customer_id}")
        if customer is None:
            if not cmd.create and not self.auto_create_customers:
                raise IngestRefused("unknown_customer", f"no customer with external_id '{cmd.external_id}'")
            if not cmd.external_id:
                raise IngestRefused("missing_field", "subject (the customer's external_id) is required")
            if not cmd.email or not cmd.currency:
                raise IngestRefused("missing_field", "data.email and data.currency are required to register")
            return Customer.register(
                external_id=cmd.external_id,
                email=cmd.email,
                name=cmd.name or "",
                currency=cmd.currency,
                tax_rate_bps=cmd.tax_rate_bps or 0,
                metadata=cmd.metadata or {},
                occurred_at=occurred_at,
            )
        if cmd.currency is not None and cmd.currency != customer.currency:
            raise IngestRefused(
                "currency_mismatch", f"the customer pays in {customer.currency}; it cannot change"
            )
        customer.update(
            email=cmd.email,
            name=cmd.name,
            tax_rate_bps=cmd.tax_rate_bps,
            metadata=cmd.metadata,
            occurred_at=occurred_at,
        )
        return customer


class IngestRefused(DomainError):
    """A refusal of ingest itself, with its own code (unknown customer, missing field...)."""

    code = "ingest_refused"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
