"""The ledger's use cases. Each loads what it needs, lets the aggregates decide, and saves every
changed aggregate in one atomic append, with the command's envelope on each event."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from typing import Any, TypeVar
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent, Repository
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Mapper, Recording
from eventsourcing.utils import strtobool
from psycopg import OperationalError

from application import billing_use_cases, payment_collection, receipts
from application import commands as c
from application.billing import Billing, BillingWork
from application.idempotency import CommandRecord
from application.outcome import Outcome
from domain import ids
from domain.alert import Alert
from domain.base import LedgerAggregate, TimeDriven, ensure_utc
from domain.business_time import check_business_time
from domain.clock import ClockTick, TestClock
from domain.customer import Customer
from domain.dunning import DunningPolicy
from domain.errors import (
    AlreadyExists,
    CurrencyMismatch,
    DomainError,
    IdempotencyKeyReused,
    InvalidValue,
    NotFound,
    TestClockDisabled,
)
from domain.invoice import Invoice, InvoiceNumberAssigned, assign_invoice_number
from domain.onboarding import Onboarding, request_fingerprint
from domain.payment import Payment
from domain.plan import Plan, normalized_usage_prices
from domain.subscription import ACTIVE, PAST_DUE, Subscription
from infra.eventstore import Envelope, LedgerMapper, LedgerRecorder, NewStreamRow, current_envelope
from infra.write_behind import (
    AppendPipeline,
    Detached,
    NotWritten,
    WriteBatch,
    WriteBehindRecorder,
    WriteBehindRepository,
    current_batch,
)

log = logging.getLogger(__name__)
COMMAND_ATTEMPTS = 8  # a use case is run again while a concurrent command keeps changing its aggregates
RETRY_LATER = timedelta(minutes=1)  # an aggregate the clock could not advance is tried again then
PIPELINED_BATCHES = 5  # the clock's batches read at once: each computed while the last is written

A = TypeVar("A", bound=Aggregate)
Receipt = dict[str, Any] | Callable[[Any], dict[str, Any]]


_current_work: contextvars.ContextVar[BillingWork | None] = contextvars.ContextVar(
    "billing_work", default=None
)
_simulated_now: contextvars.ContextVar[Callable[[], datetime] | None] = contextvars.ContextVar(
    "simulated_now", default=None
)


_by_hand: contextvars.ContextVar[bool] = contextvars.ContextVar("collections_by_hand", default=False)


@contextmanager
def collections_by_hand() -> Iterator[None]:
    """Within the block (this thread or task only), invoices are not dunned: no reminders, no
    retries, no final action. For a writer that plays the collections itself (`ledger simulate`
    retries and writes off its customers' invoices as its model says)."""
    token = _by_hand.set(True)
    try:
        yield
    finally:
        _by_hand.reset(token)


@contextmanager
def simulated_time(now: Callable[[], datetime]) -> Iterator[None]:
    """Within the block (this thread or task only), the ledger's now is `now()`: a simulation
    writing a backdated history catches each subscription up to the simulated moment, not to
    the wall clock."""
    token = _simulated_now.set(now)
    try:
        yield
    finally:
        _simulated_now.reset(token)


@dataclass
class ClockRun:
    """What one run of the ledger's clock recorded."""

    advanced: int = 0
    position: int = 0

    def note(self, position: int) -> None:
        if position:
            self.advanced += 1
            self.position = max(self.position, position)


class ConcurrentChange(Exception):
    """Another command changed the same aggregate first; the use case is run again."""


# What makes the clock do a batch again one aggregate at a time.
CLOCK_FAILURES = (DomainError, ConcurrentChange, OperationalError, IntegrityError)


class Ledger(Application[UUID]):
    name = "Ledger"

    def __init__(
        self,
        env: dict[str, str] | None = None,
        *,
        invoice_prefix: str = "INV",
        allow_test_clock: bool = False,
        invoice_grace: timedelta = timedelta(hours=1),
        dunning: DunningPolicy | None = None,
    ) -> None:
        super().__init__(env)
        self.invoice_prefix = invoice_prefix
        self._dunning = dunning or DunningPolicy()
        self.allow_test_clock = allow_test_clock
        self.billing = Billing(self, grace=invoice_grace)

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]:
        """As the library's, without its protocol `isinstance` checks on every object saved: with
        a batch of a billing day (thousands of aggregates in one append) they cost more than the
        rest of collecting the events."""
        processing = self._collect(objs)
        processing.saved_kwargs.update(kwargs)
        recordings = self._record(processing)
        batch = current_batch()
        if batch is not None:
            batch.keep(processing.aggregates)
        self._take_snapshots(processing)
        self._notify(recordings)
        self.notify(processing.events)  # deprecated in the library, kept as it calls it
        return recordings

    @staticmethod
    def _collect(objs: Iterable[Any]) -> ProcessingEvent[UUID]:
        processing: ProcessingEvent[UUID] = ProcessingEvent()
        for obj in objs:
            if isinstance(obj, Aggregate):
                processing.events.extend(obj.collect_events())
                processing.aggregates[obj.id] = obj
            elif isinstance(obj, InvoiceNumberAssigned):
                processing.events.append(obj)
            elif obj is not None:
                processing.collect_events(obj)
        return processing

    def _append(self, envelope: Envelope, objs: Iterable[Any]) -> list[int]:
        """Save with this envelope; the positions of the events recorded. Within a write batch
        the events are held in it as rows of the events table, straight from the aggregates (none
        of the library's recordings, notifications or snapshots: nothing follows the ledger
        in-process, and it takes no snapshots)."""
        token = current_envelope.set(envelope)
        try:
            batch = current_batch()
            if batch is None:
                return [recording.notification.id for recording in self.save(*objs)]
            processing = self._collect(objs)
            mapper = self.mapper
            assert isinstance(mapper, LedgerMapper)
            positions = batch.hold([mapper.to_row(e) for e in processing.events], envelope.timers)
            batch.keep(processing.aggregates)
            return positions
        finally:
            current_envelope.reset(token)

    @property
    def dunning(self) -> DunningPolicy | None:
        """The dunning settings, or None where collections are played by hand (`collections_by_hand`)."""
        return None if _by_hand.get() else self._dunning

    def now(self) -> datetime:
        """The ledger's now: the wall clock (UTC), unless a test clock moved it forward, or the
        caller writes a history in a world of its own (`simulated_time`)."""
        simulated = _simulated_now.get()
        if simulated is not None:
            return simulated()
        wall = datetime.now(UTC)
        if not self.allow_test_clock:
            return wall
        test_clock = self._find(ids.TEST_CLOCK_ID)
        return max(wall, test_clock.to) if isinstance(test_clock, TestClock) else wall

    def construct_mapper(self) -> Mapper[UUID]:
        return LedgerMapper()

    def construct_repository(self) -> Repository[UUID]:
        """The library's repository (as configured by the same environment variables), which
        answers from a write batch within one (`write_behind`)."""
        cache_maxsize = self.env.get(self.AGGREGATE_CACHE_MAXSIZE)
        return WriteBehindRepository(
            event_store=self.events,
            snapshot_store=self.snapshots,
            cache_maxsize=int(cache_maxsize) if cache_maxsize else None,
            fastforward=strtobool(self.env.get(self.AGGREGATE_CACHE_FASTFORWARD, "y")),
            fastforward_skipping=strtobool(self.env.get(self.AGGREGATE_CACHE_FASTFORWARD_SKIPPING, "n")),
            deepcopy_from_cache=strtobool(self.env.get(self.DEEPCOPY_FROM_AGGREGATE_CACHE, "y")),
        )

    def write_behind(self, detached: Detached | None = None) -> WriteBatch:
        """A batch holding this context's appends in memory, written in large transactions (see
        `infra.write_behind`): for a writer that alone writes the streams it makes."""
        store = self.store
        if not isinstance(store, WriteBehindRecorder):
            raise TypeError("write-behind needs the ledger's WriteBehindRecorder")
        return store.batch(detached)

    @property
    def store(self) -> LedgerRecorder:
        recorder = self.recorder
        assert isinstance(recorder, LedgerRecorder), "the ledger needs its own recorder"
        return recorder

    # ------------------------------------------------------------------ plumbing

    def _get(self, cls: type[A], aggregate_id: UUID, what: str) -> A:
        try:
            aggregate: Aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFound(f"no {what} with id {aggregate_id}") from None
        if not isinstance(aggregate, cls):
            raise NotFound(f"no {what} with id {aggregate_id}")
        return aggregate

    def _find(self, aggregate_id: UUID) -> Aggregate | None:
        try:
            return self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None

    def _subscription(self, subscription_id: UUID, at: datetime) -> Subscription:
        """The subscription with what fell due by `at` recorded: a command decides on the state
        the subscription was in at the moment it takes effect."""
        sub = self._get(Subscription, subscription_id, "subscription")
        work = self._work()
        work.hold([sub])
        self.billing.bill(sub, at, work)
        return sub

    def _work(self) -> BillingWork:
        """The billing work of the command being run (what it loads beside its aggregates)."""
        work = _current_work.get()
        if work is None or work.ledger is not self:
            work = BillingWork(self)
            _current_work.set(work)
        return work

    def _plan(self, code: str) -> Plan:
        plan = self._find(ids.plan_id(code))
        if not isinstance(plan, Plan):
            raise NotFound(f"no plan with code '{code}'", field="plan_code")
        return plan

    def _commit(
        self,
        ctx: c.CommandContext,
        resource: LedgerAggregate,
        receipt: Receipt,
        *others: LedgerAggregate | InvoiceNumberAssigned | None,
        created: bool = False,
        now: datetime | None = None,
    ) -> Outcome:
        """Append the pending events of `resource` and `others` (and the command record) at once.

        First every time-driven aggregate among them records what fell due up to now, so a
        backdated command answers with its aggregates caught up (a subscription started 90 days
        ago is in its third period when the write answers); their timers are written with the
        events. `receipt` may be a function of the resource, built once it is caught up."""
        moment = now or self.now()
        touched = [a for a in (resource, *others) if isinstance(a, LedgerAggregate)]
        work = self._work()
        work.hold(touched)
        for sub in [a for a in touched if isinstance(a, Subscription)]:
            self.billing.bill(sub, moment, work)
        extra = [a for a in work.changed() if all(a is not t for t in touched)]
        timers = self.catch_up([*touched, *extra], moment)
        answer = receipt(resource) if callable(receipt) else receipt
        record: CommandRecord | None = None
        if ctx.idempotency_key:
            record = CommandRecord(
                id=ids.idempotency_record_id("command", ctx.idempotency_key),
                idempotency_key=ctx.idempotency_key,
                request_hash=ctx.request_hash or "",
                receipt=answer,
                resource_id=str(resource.id),
                occurred_at=ctx.occurred_at,
            )
        aggregates = [a for a in (resource, *others, *extra, *work.numbers, record) if a is not None]
        envelope = Envelope(
            source=ctx.source,
            actor=ctx.actor,
            correlation_id=ctx.correlation_id,
            causation_id=record.id if record else None,
            reason=ctx.reason,
            customers={a.id: a.owner_customer_id for a in aggregates if isinstance(a, LedgerAggregate)},
            timers=timers,
        )
        try:
            positions = self._append(envelope, aggregates)
        except IntegrityError as conflict:
            raise ConcurrentChange(str(conflict)) from conflict
        if positions:
            position = max(positions)
        else:
            # Nothing recorded: a timer that fell due with nothing to do moves on all the same.
            if timers:
                self.store.set_timers(timers)
            position = self.store.position_of(resource.id) or 0
        return Outcome(resource.id, answer, position, created, recorded=bool(positions))

    @staticmethod
    def catch_up(aggregates: Iterable[object], now: datetime) -> dict[UUID, datetime | None]:
        """Record what fell due up to `now` on every time-driven aggregate about to be saved;
        answer their timers (when each next falls due), to be written with their events."""
        timed = [a for a in aggregates if isinstance(a, TimeDriven)]
        for aggregate in timed:
            aggregate.advance(now)
        return {a.id: a.next_due_at for a in timed}

    def _replayed(self, ctx: c.CommandContext) -> Outcome | None:
        """The stored answer of an already executed command with this idempotency key."""
        if not ctx.idempotency_key:
            return None
        record_id = ids.idempotency_record_id("command", ctx.idempotency_key)
        record = self._find(record_id)
        if not isinstance(record, CommandRecord):
            return None
        if record.request_hash != (ctx.request_hash or ""):
            raise IdempotencyKeyReused("this Idempotency-Key was already used with a different request")
        position = self.store.position_of(record_id) or 0
        return Outcome(UUID(record.resource_id), record.receipt, position, created=True)

    def _run(self, ctx: c.CommandContext, use_case: Callable[[c.CommandContext], Outcome]) -> Outcome:
        """Run a use case; run it again (up to `COMMAND_ATTEMPTS` times in all) while another
        command changed one of its aggregates first."""
        occurred_at = check_business_time(ensure_utc(ctx.occurred_at), self.now())
        if occurred_at is not ctx.occurred_at:
            ctx = replace(ctx, occurred_at=occurred_at)
        attempt = 1
        while True:
            token = _current_work.set(BillingWork(self))
            try:
                return self._replayed(ctx) or use_case(ctx)
            except BaseException as failed:
                batch = current_batch()
                if batch is not None:
                    batch.forget_changed()
                if not isinstance(failed, ConcurrentChange) or attempt == COMMAND_ATTEMPTS:
                    raise
            finally:
                _current_work.reset(token)
            attempt += 1

    # ------------------------------------------------------------------ plans

    def define_plan(self, cmd: c.DefinePlan, ctx: c.CommandContext) -> Outcome:
        """Define a plan. The same definition again answers as the first time and records
        nothing; other terms under an existing code are refused (revising is `revise_plan`)."""

        def use_case(ctx: c.CommandContext) -> Outcome:
            terms = _plan_terms(cmd)
            existing = self._find(ids.plan_id(cmd.code))
            if isinstance(existing, Plan):
                if existing.terms() != terms:
                    raise AlreadyExists(
                        f"plan '{cmd.code}' exists with other terms; revise it with "
                        f"POST /v1/plans/{cmd.code}/revise",
                        field="code",
                    )
                return self._commit(ctx, existing, receipts.plan_receipt(existing), created=True)
            plan = Plan.define(code=cmd.code, occurred_at=ctx.occurred_at, **terms)
            return self._commit(ctx, plan, receipts.plan_receipt(plan), created=True)

        return self._run(ctx, use_case)

    def revise_plan(self, cmd: c.RevisePlan, ctx: c.CommandContext) -> Outcome:
        """New terms for an existing plan (the same terms record nothing)."""

        def use_case(ctx: c.CommandContext) -> Outcome:
            plan = self._find(ids.plan_id(cmd.code))
            if not isinstance(plan, Plan):
                raise NotFound(f"no plan with code '{cmd.code}'")
            plan.revise(occurred_at=ctx.occurred_at, **_plan_terms(cmd))
            return self._commit(ctx, plan, receipts.plan_receipt(plan))

        return self._run(ctx, use_case)

    def retire_plan(self, cmd: c.RetirePlan, ctx: c.CommandContext) -> Outcome:
        def use_case(ctx: c.CommandContext) -> Outcome:
            plan = self._plan(cmd.code)
            plan.retire(occurred_at=ctx.occurred_at)
            return self._commit(ctx, plan, receipts.plan_receipt(plan))

        return self._run(ctx, use_case)

    # ------------------------------------------------------------------ customers

    def register_customer(self, cmd: c.RegisterCustomer, ctx: c.CommandContext) -> Outcome:
        def use_case(ctx: c.CommandContext) -> Outcome:
            existing = self._find(ids.customer_id(cmd.external_id))
            if isinstance(existing, Customer):
                wanted = (
                    cmd.email,
                    cmd.name,
                    cmd.currency,
                    cmd.tax_rate_bps,
                    cmd.metadata,
                    cmd.tax_exempt,
                    cmd.vat_id,
                    cmd.address,
                    cmd.net_terms_days,
                    cmd.collection_method,
                )
                found = (
                    existing.email,
                    existing.name,
                    existing.currency,
                    existing.tax_rate_bps,
                    existing.metadata,
                    existing.tax_exempt,
                    existing.vat_id,
                    existing.address,
                    existing.net_terms_days,
                    existing.collection_method,
                )
                if wanted != found:
                    raise AlreadyExists(
                        f"a different customer with external_id '{cmd.external_id}' exists",
                        field="external_id",
                    )
                # The same registration again: answer as the first time, record nothing.
                return self._commit(ctx, existing, receipts.customer_receipt(existing), created=True)
            customer = Customer.register(
                external_id=cmd.external_id,
                email=cmd.email,
                name=cmd.name,
                currency=cmd.currency,
                tax_rate_bps=cmd.tax_rate_bps,
                metadata=cmd.metadata,
                occurred_at=ctx.occurred_at,
                tax_exempt=cmd.tax_exempt,
                vat_id=cmd.vat_id,
                address=cmd.address,
                net_terms_days=cmd.net_terms_days,
                collection_method=cmd.collection_method,
            )
            return self._commit(ctx, customer, receipts.customer_receipt(customer), created=True)

        return self._run(ctx, use_case)

    def update_customer(self, cmd: c.UpdateCustomer, ctx: c.CommandContext) -> Outcome:
        def use_case(ctx: c.CommandContext) -> Outcome:
            customer = self._get(Customer, cmd.customer_id, "customer")
            customer.update(
                email=cmd.email,
                name=cmd.name,
                tax_rate_bps=cmd.tax_rate_bps,
                metadata=cmd.metadata,
                occurred_at=ctx.occurred_at,
                tax_exempt=cmd.tax_exempt,
                vat_id=cmd.vat_id,
                address=cmd.address,
                net_terms_days=cmd.net_terms_days,
                collection_method=cmd.collection_method,
            )
            return self._commit(ctx, customer, receipts.customer_receipt(customer))

        return self._run(ctx, use_case)

    def archive_customer(self, cmd: c.ArchiveCustomer, ctx: c.CommandContext) -> Outcome:
        def use_case(ctx: c.CommandContext) -> Outcome:
            customer = self._get(Customer, cmd.customer_id, "customer")
            customer.archive(occurred_at=ctx.occurred_at)
            return self._commit(ctx, customer, receipts.customer_receipt(customer))

        return self._run(ctx, use_case)

    # ------------------------------------------------------------------ onboarding

    def onboard(self, cmd: c.Onboard, ctx: c.CommandContext) -> Outcome:
        """Register the customer (or take the one registered under that external_id), start its
        subscription (the plan's trial, or `trial_days`) and record the onboarding with the id of
        the ingest key to issue, in one append. The same request again answers as the first time
        and records nothing; another request under that external_id is 409. The key itself is
        stored by `application.onboarding`, after this append."""
        request_hash = request_fingerprint(
            name=cmd.name,
            email=cmd.email,
            plan_code=cmd.plan_code,
            trial_days=cmd.trial_days,
            metadata=cmd.metadata,
        )

        def use_case(ctx: c.CommandContext) -> Outcome:
            found = self._find(ids.onboarding_id(cmd.external_id))
            if isinstance(found, Onboarding):
                found.check_same_request(request_hash)
                return self._commit(ctx, found, receipts.onboarding_receipt(found))
            plan = self._plan(cmd.plan_code)
            customer = self._find(ids.customer_id(cmd.external_id))
            if not isinstance(customer, Customer):
                customer = Customer.register(
                    external_id=cmd.external_id,
                    email=cmd.email,
                    name=cmd.name,
                    currency=plan.currency,
                    tax_rate_bps=0,
                    metadata=cmd.metadata,
                    occurred_at=ctx.occurred_at,
                )
            customer.check_not_archived()
            if plan.currency != customer.currency:
                raise CurrencyMismatch(
                    f"plan {plan.code} is in {plan.currency}, customer pays in {customer.currency}",
                    field="plan_code",
                )
            sub = Subscription.start(
                customer_id=customer.id,
                plan=plan,
                quantity=1,
                trial_days=cmd.trial_days,
                occurred_at=ctx.occurred_at,
                subscription_id=ids.onboarding_subscription_id(cmd.external_id),
            )
            record = Onboarding.complete(
                external_id=cmd.external_id,
                customer_id=customer.id,
                subscription_id=sub.id,
                plan_code=plan.code,
                trial_end=sub.trial_end,
                request_hash=request_hash,
                occurred_at=ctx.occurred_at,
            )
            receipt = receipts.onboarding_receipt(record)
            return self._commit(ctx, record, receipt, customer, sub, created=True)

        return self._run(ctx, use_case)

    # ------------------------------------------------------------------ subscriptions

    def start_subscription(self, cmd: c.StartSubscription, ctx: c.CommandContext) -> Outcome:
        def use_case(ctx: c.CommandContext) -> Outcome:
            customer = self._get(Customer, cmd.customer_id, "customer")
            customer.check_not_archived()
            plan = self._plan(cmd.plan_code)
            if plan.currency != customer.currency:
                raise CurrencyMismatch(
                    f"plan {plan.code} is in {plan.currency}, customer pays in {customer.currency}",
                    field="plan_code",
                )
            sub = Subscription.start(
                customer_id=customer.id,
                plan=plan,
                quantity=cmd.quantity,
                trial_days=cmd.trial_days,
                occurred_at=ctx.occurred_at,
                billed_by=cmd.billed_by,
            )
            return self._commit(ctx, sub, receipts.subscription_receipt, created=True)

        return self._run(ctx, use_case)

    def change_subscription(self, cmd: c.ChangeSubscription, ctx: c.CommandContext) -> Outcome:
        def use_case(ctx: c.CommandContext) -> Outcome:
            sub = self._subscription(cmd.subscription_id, ctx.occurred_at)
            plan = self._plan(cmd.plan_code) if cmd.plan_code else None
            sub.change(
                plan=plan,
                quantity=cmd.quantity,
                occurred_at=ctx.occurred_at,
                proration_behavior=cmd.proration_behavior,
            )
            return self._commit(ctx, sub, receipts.subscription_receipt)

        return self._run(ctx, use_case)

    def add_subscription_item(self, cmd: c.AddSubscriptionItem, ctx: c.CommandContext) -> Outcome:
        def use_case(ctx: c.CommandContext) -> Outcome:
            sub = self._subscription(cmd.subscription_id, ctx.occurred_at)
            plan = self._plan(cmd.plan_code)
            item_id = sub.add_item(
                plan=plan,
                quantity=cmd.quantity,
                occurred_at=ctx.occurred_at,
                proration_behavior=cmd.proration_behavior,
            )
            return self._commit(
                ctx, sub, lambda s: receipts.item_receipt(s, s.check_item(item_id)), created=True
            )

        return self._run(ctx, use_case)

    def change_subscription_item(self, cmd: c.ChangeSubscriptionItem, ctx: c.CommandContext) -> Outcome:
        def use_case(ctx: c.CommandContext) -> Outcome:
            sub = self._subscription(cmd.subscription_id, ctx.occurred_at)
            sub.change_item_quantity(
                item_id=cmd.item_id,
                quantity=cmd.quantity,
                occurred_at=ctx.occurred_at,
                proration_behavior=cmd.proration_behavior,
            )
            return self._commit(ctx, sub, lambda s: receipts.item_receipt(s, s.check_item(cmd.item_id)))

        return self._run(ctx, use_case)

    def remove_subscription_item(self, cmd: c.RemoveSubscriptionItem, ctx: c.CommandContext) -> Outcome:
        def use_case(ctx: c.CommandContext) -> Outcome:
            sub = self._subscription(cmd.subscription_id, ctx.occurred_at)
            item = sub.check_item(cmd.item_id)
            sub.remove_item(
                item_id=cmd.item_id, occurred_at=ctx.occurred_at, proration_behavior=cmd.proration_behavior
            )
            return self._commit(
                ctx, sub, lambda s: receipts.item_receipt(s, item, removed_at=ctx.occurred_at)
            )

        return self._run(ctx, use_case)

    def cancel_subscription(self, cmd: c.CancelSubscription, ctx: c.CommandContext) -> Outcome:
        def use_case(ctx: c.CommandContext) -> Outcome:
            sub = self._subscription(cmd.subscription_id, ctx.occurred_at)
            if cmd.at_period_end:
                sub.schedule_cancellation(occurred_at=ctx.occurred_at)
            else:
                sub.cancel_now(occurred_at=ctx.occurred_at, proration_behavior=cmd.proration_behavior)
            return self._commit(ctx, sub, receipts.subscription_receipt)

        return self._run(ctx, use_case)

    def withdraw_cancellation(self, subscription_id: UUID, ctx: c.CommandContext) -> Outcome:
        def use_case(ctx: c.CommandContext) -> Outcome:
            sub = self._subscription(subscription_id, ctx.occurred_at)
            sub.withdraw_cancellation(occurred_at=ctx.occurred_at)
            return self._commit(ctx, sub, receipts.subscription_receipt)

        return self._run(ctx, use_case)

    def renew_subscription(self, cmd: c.RenewSubscription, ctx: c.CommandContext) -> Outcome:
        """Start the next period. The renewal occurs at the end of the current period."""

        def use_case(ctx: c.CommandContext) -> Outcome:
            sub = self._get(Subscription, cmd.subscription_id, "subscription")
            sub.renew(now=ctx.occurred_at)
            return self._commit(ctx, sub, receipts.subscription_receipt(sub))

        return self._run(ctx, use_case)

    def end_trial(self, cmd: c.EndTrial, ctx: c.CommandContext) -> Outcome:
        def use_case(ctx: c.CommandContext) -> Outcome:
            sub = self._subscription(cmd.subscription_id, ctx.occurred_at)
            # Converted at trial_end, or earlier when the command says so (a provider did it).
            early = ctx.occurred_at if sub.trial_end and ctx.occurred_at < sub.trial_end else None
            sub.end_trial(occurred_at=early)
            return self._commit(ctx, sub, receipts.subscription_receipt)

        return self._run(ctx, use_case)

    def end_subscription_at_period_end(
        self, cmd: c.EndSubscriptionAtPeriodEnd, ctx: c.CommandContext
    ) -> Outcome:
        def use_case(ctx: c.CommandContext) -> Outcome:
            sub = self._get(Subscription, cmd.subscription_id, "subscription")
            sub.end_at_period_end(now=ctx.occurred_at)
            return self._commit(ctx, sub, receipts.subscription_receipt)

        return self._run(ctx, use_case)

    # ------------------------------------------------------------------ invoices

    def draft_invoice(self, cmd: c.DraftInvoice, ctx: c.CommandContext) -> Outcome:
        def use_case(ctx: c.CommandContext) -> Outcome:
            customer = self._get(Customer, cmd.customer_id, "customer")
            customer.check_not_archived()
            if cmd.currency != customer.currency:
                raise CurrencyMismatch(
                    f"the invoice is in {cmd.currency}, customer pays in {customer.currency}",
                    field="currency",
                )
            if cmd.subscription_id is not None:
                sub = self._get(Subscription, cmd.subscription_id, "subscription")
                if sub.customer_id != customer.id:
                    raise InvalidValue(
                        "the subscription belongs to another customer", field="subscription_id"
                    )
            invoice = Invoice.draft(
                customer_id=customer.id,
                subscription_id=cmd.subscription_id,
                currency=cmd.currency,
                tax_rate_bps=customer.tax_rate_bps,
                discount=cmd.discount,
                occurred_at=ctx.occurred_at,
            )
            for line in cmd.lines:
                invoice.add_line(
                    description=line.description,
                    quantity=line.quantity,
                    unit_amount=line.unit_amount,
                    period_start=line.period_start,
                    period_end=line.period_end,
                    occurred_at=ctx.occurred_at,
                )
            return self._commit(ctx, invoice, receipts.invoice_receipt(invoice), created=True)

        return self._run(ctx, use_case)

    def finalize_invoice(self, cmd: c.FinalizeInvoice, ctx: c.CommandContext) -> Outcome:
        def use_case(ctx: c.CommandContext) -> Outcome:
            invoice = self._get(Invoice, cmd.invoice_id, "invoice")
            customer = self._get(Customer, invoice.customer_id, "customer")
            assigned = assign_invoice_number(
                last_sequence=self.store.stream_version(ids.INVOICE_NUMBERING_ID),
                prefix=self.invoice_prefix,
                invoice_id=invoice.id,
                occurred_at=ctx.occurred_at,
            )
            invoice.finalize(
                number=assigned.number,
                due_date=cmd.due_date,
                occurred_at=ctx.occurred_at,
                collection_method=customer.collection_method,
                dunning=self.dunning,
            )
            return self._commit(ctx, invoice, receipts.invoice_receipt(invoice), assigned)

        return self._run(ctx, use_case)

    def void_invoice(self, cmd: c.VoidInvoice, ctx: c.CommandContext) -> Outcome:
        def use_case(ctx: c.CommandContext) -> Outcome:
            invoice = self._get(Invoice, cmd.invoice_id, "invoice")
            invoice.void(occurred_at=ctx.occurred_at)
            return self._commit(ctx, invoice, receipts.invoice_receipt(invoice))

        return self._run(ctx, use_case)

    def mark_invoice_uncollectible(self, cmd: c.MarkInvoiceUncollectible, ctx: c.CommandContext) -> Outcome:
        def use_case(ctx: c.CommandContext) -> Outcome:
            invoice = self._get(Invoice, cmd.invoice_id, "invoice")
            invoice.mark_uncollectible(occurred_at=ctx.occurred_at)
            return self._commit(ctx, invoice, receipts.invoice_receipt(invoice))

        return self._run(ctx, use_case)

    # ------------------------------------------------------------------ payments

    def initiate_payment(self, cmd: c.InitiatePayment, ctx: c.CommandContext) -> Outcome:
        def use_case(ctx: c.CommandContext) -> Outcome:
            customer = self._get(Customer, cmd.customer_id, "customer")
            if cmd.currency != customer.currency:
                raise CurrencyMismatch(
                    f"the payment is in {cmd.currency}, customer pays in {customer.currency}",
                    field="currency",
                )
            if cmd.invoice_id is not None:
                invoice = self._get(Invoice, cmd.invoice_id, "invoice")
                if invoice.customer_id != customer.id:
                    raise InvalidValue("the invoice belongs to another customer", field="invoice_id")
                invoice.check_payable(cmd.amount)
            payment = Payment.initiate(
                customer_id=customer.id,
                invoice_id=cmd.invoice_id,
                amount=cmd.amount,
                currency=cmd.currency,
                provider_reference=cmd.provider_reference,
                occurred_at=ctx.occurred_at,
            )
            return self._commit(ctx, payment, receipts.payment_receipt(payment), created=True)

        return self._run(ctx, use_case)

    def _invoice_and_subscription(
        self, payment: Payment, at: datetime
    ) -> tuple[Invoice | None, Subscription | None]:
        if payment.invoice_id is None:
            return None, None
        invoice = self._get(Invoice, payment.invoice_id, "invoice")
        sub = None
        if invoice.subscription_id is not None:
            sub = self._subscription(invoice.subscription_id, at)
        return invoice, sub

    def succeed_payment(self, cmd: c.SucceedPayment, ctx: c.CommandContext) -> Outcome:
        """A succeeded payment is applied to its invoice; a paid invoice brings its
        past_due subscription back to active. All in one append."""

        def use_case(ctx: c.CommandContext) -> Outcome:
            payment = self._get(Payment, cmd.payment_id, "payment")
            payment.succeed(occurred_at=ctx.occurred_at)
            invoice, sub = self._invoice_and_subscription(payment, ctx.occurred_at)
            if invoice is not None:
                invoice.apply_payment(
                    payment_id=payment.id, amount=payment.amount, occurred_at=ctx.occurred_at
                )
                if (
                    sub is not None
                    and sub.status == PAST_DUE
                    and invoice.status == "paid"
                    and str(invoice.id) in sub.past_due_invoice_ids
                ):
                    sub.recover(invoice_id=invoice.id, occurred_at=ctx.occurred_at)
            return self._commit(ctx, payment, receipts.payment_receipt(payment), invoice, sub)

        return self._run(ctx, use_case)

    def fail_payment(self, cmd: c.FailPayment, ctx: c.CommandContext) -> Outcome:
        """A failed payment changes no invoice amount; the invoice's subscription becomes past_due."""

        def use_case(ctx: c.CommandContext) -> Outcome:
            payment = self._get(Payment, cmd.payment_id, "payment")
            payment.fail(
                failure_code=cmd.failure_code,
                failure_message=cmd.failure_message,
                occurred_at=ctx.occurred_at,
            )
            invoice, sub = self._invoice_and_subscription(payment, ctx.occurred_at)
            if invoice is not None:
                invoice.record_failed_payment(
                    payment_id=payment.id, occurred_at=ctx.occurred_at, policy=self.dunning
                )
            if (
                invoice is not None
                and sub is not None
                and sub.status in (ACTIVE, PAST_DUE)
                and str(invoice.id) not in sub.past_due_invoice_ids
            ):
                sub.mark_past_due(invoice_id=invoice.id, occurred_at=ctx.occurred_at)
            return self._commit(ctx, payment, receipts.payment_receipt(payment), invoice, sub)

        return self._run(ctx, use_case)

    def retry_payment(self, cmd: c.RetryPayment, ctx: c.CommandContext) -> Outcome:
        def use_case(ctx: c.CommandContext) -> Outcome:
            payment = self._get(Payment, cmd.payment_id, "payment")
            payment.retry(occurred_at=ctx.occurred_at)
            return self._commit(ctx, payment, receipts.payment_receipt(payment))

        return self._run(ctx, use_case)

    # ------------------------------------------------------------------ collections (payment_collection.py)

    def start_collection(self, cmd: c.StartCollection, ctx: c.CommandContext) -> Outcome | None:
        return payment_collection.start_collection(self, cmd, ctx)

    def submit_payment(self, cmd: c.SubmitPayment, ctx: c.CommandContext) -> Outcome:
        return payment_collection.submit_payment(self, cmd, ctx)

    def record_backend_outcome(self, cmd: c.RecordBackendOutcome, ctx: c.CommandContext) -> Outcome:
        return payment_collection.record_backend_outcome(self, cmd, ctx)

    def cancel_payment(self, cmd: c.CancelPayment, ctx: c.CommandContext) -> Outcome:
        return payment_collection.cancel_payment(self, cmd, ctx)

    def refund_payment(self, cmd: c.RefundPayment, ctx: c.CommandContext) -> Outcome:
        def use_case(ctx: c.CommandContext) -> Outcome:
            payment = self._get(Payment, cmd.payment_id, "payment")
            payment.refund(amount=cmd.amount, occurred_at=ctx.occurred_at)
            return self._commit(ctx, payment, receipts.payment_receipt(payment))

        return self._run(ctx, use_case)

    # ------------------------------------------------------------------ alerts

    def raise_alert(self, cmd: c.RaiseAlert, ctx: c.CommandContext) -> Outcome:
        def use_case(ctx: c.CommandContext) -> Outcome:
            existing = self._find(cmd.alert_id)
            if isinstance(existing, Alert):
                # One alert per type and subject: a condition that comes back reopens it.
                if existing.status != "open":
                    existing.reopen(message=cmd.message, occurred_at=ctx.occurred_at)
                return self._commit(ctx, existing, receipts.alert_receipt(existing))
            alert = Alert.raise_alert(
                alert_id=cmd.alert_id,
                alert_type=cmd.alert_type,
                severity=cmd.severity,
                subject=cmd.subject,
                message=cmd.message,
                customer_id=cmd.customer_id,
                occurred_at=ctx.occurred_at,
            )
            return self._commit(ctx, alert, receipts.alert_receipt(alert), created=True)

        return self._run(ctx, use_case)

    # ------------------------------------------------------------------ billing (billing_use_cases.py)

    def define_coupon(self, cmd: c.DefineCoupon, ctx: c.CommandContext) -> Outcome:
        return billing_use_cases.define_coupon(self, cmd, ctx)

    def apply_discount(self, cmd: c.ApplyDiscount, ctx: c.CommandContext) -> Outcome:
        return billing_use_cases.apply_discount(self, cmd, ctx)

    def issue_credit_note(self, cmd: c.IssueCreditNote, ctx: c.CommandContext) -> Outcome:
        return billing_use_cases.issue_credit_note(self, cmd, ctx)

    def upcoming_invoice(
        self, customer_id: UUID, subscription_id: UUID | None = None, known_at: datetime | None = None
    ) -> dict[str, Any]:
        return billing_use_cases.upcoming_invoice(self, customer_id, subscription_id, known_at)

    # ------------------------------------------------------------------ clock

    def record_clock_tick(self, cmd: c.RecordClockTick, ctx: c.CommandContext) -> Outcome:
        """Record that a UTC day has begun (once per day, whoever asks first)."""

        def use_case(ctx: c.CommandContext) -> Outcome:
            existing = self._find(ids.clock_tick_id(cmd.day))
            if isinstance(existing, ClockTick):
                return self._commit(ctx, existing, receipts.clock_tick_receipt(existing))
            tick = ClockTick.record(day=cmd.day, occurred_at=ctx.occurred_at)
            return self._commit(ctx, tick, receipts.clock_tick_receipt(tick), created=True)

        return self._run(ctx, use_case)

    def advance_due(self, now: datetime | None = None, *, limit: int = 200) -> ClockRun:
        """The ledger's clock: record every time-driven transition due by `now` (the ledger's now
        by default), each at the moment it fell due, and the UTC days begun by then. Runs until
        nothing is due. Due aggregates are advanced `limit` at a time in one append (a billing
        day of many subscriptions is many invoices per transaction), each batch computed while
        the one before is being written; a batch that fails is done again one aggregate at a
        time, and an aggregate that fails is logged and left for the next run."""
        moment = now or self.now()
        run = ClockRun()
        seen: set[UUID] = set()
        store = self.store
        assert isinstance(store, WriteBehindRecorder)
        with AppendPipeline(store) as pipeline:
            while due := store.due_timers(moment, limit * PIPELINED_BATCHES):
                # Whatever is still due after its turn (it failed) waits a minute, so one bad
                # aggregate never holds the clock: its transitions are recorded, when they are, at
                # the moments they fell due, whenever that is.
                again = [i for i in due if i in seen]
                if again:
                    store.set_timers({i: moment + RETRY_LATER for i in again})
                    due = [i for i in due if i not in seen]
                seen.update(due)
                if ids.DAILY_CLOCK_TIMER_ID in due:
                    self._record_days(moment, run)
                    due.remove(ids.DAILY_CLOCK_TIMER_ID)
                failed: list[list[UUID]] = []
                numbered: int | None = None  # the last invoice number the batches so far assigned
                for first in range(0, len(due), limit):
                    batch = due[first : first + limit]
                    try:
                        numbered = self._advance_batch(batch, moment, pipeline, numbered)
                    except CLOCK_FAILURES as failed_batch:
                        log.info("advancing %d aggregates at once failed (%s)", len(batch), failed_batch)
                        failed.append(batch)
                written, not_written = pipeline.results()
                for position in written:
                    run.note(position)
                for batch, failure in not_written:
                    if not isinstance(failure, (*CLOCK_FAILURES, NotWritten)):
                        raise failure
                    log.info("writing %d aggregates at once failed (%s)", len(batch), failure)
                    failed.append(batch)
                for aggregate_id in [i for batch in failed for i in batch]:
                    try:
                        self._advance_one(aggregate_id, moment, run)
                    except (DomainError, ConcurrentChange, OperationalError) as alone:
                        log.warning("the clock could not advance %s: %s", aggregate_id, alone)
        return run

    def _advance_batch(
        self, aggregate_ids: list[UUID], moment: datetime, pipeline: AppendPipeline, numbered: int | None
    ) -> int | None:
        """Advance these aggregates to `moment` and bill what falls due, all in one append handed
        to the pipeline; the last invoice number assigned so far (`numbered`: by the batches
        handed over before, not yet written). A batch sharing a customer with an append in
        flight waits for it: it would bill on what the customer was before."""
        if not aggregate_ids:
            return numbered
        loaded = self.store.load_aggregates(aggregate_ids, self.mapper)
        work = BillingWork(self, numbered=numbered)
        token = _current_work.set(work)
        try:
            timed = [a for a in loaded.values() if isinstance(a, TimeDriven)]
            work.hold(timed)
            subs = [a for a in loaded.values() if isinstance(a, Subscription)]
            customer_ids = {s.customer_id for s in subs}
            if customer_ids & pipeline.customers:
                pipeline.wait()
            work.prefetch(subs, self.store.load_aggregates(list(customer_ids), self.mapper))
            for aggregate in timed:
                if isinstance(aggregate, Subscription):
                    self.billing.bill(aggregate, moment, work)
                else:
                    aggregate.advance(moment)
            timers: dict[UUID, datetime | None] = {i: None for i in aggregate_ids if i not in loaded}
            timers |= self.catch_up([*timed, *work.changed()], moment)
            changed = list({a.id: a for a in [*timed, *work.changed()] if a.pending_events}.values())
            envelope = Envelope(
                source="system",
                actor="clock",
                customers={a.id: a.owner_customer_id for a in changed},
                timers=timers,
            )
            pipeline.submit(
                aggregate_ids, self._rows(envelope, [*changed, *work.numbers]), timers, customer_ids
            )
            return work.numbers[-1].originator_version if work.numbers else numbered
        finally:
            _current_work.reset(token)

    def _rows(self, envelope: Envelope, objs: list[Any]) -> list[NewStreamRow]:
        """The pending events of these aggregates as rows of the events table, with this
        envelope (the library's recordings and notifications are skipped: nothing follows the
        ledger in-process)."""
        mapper = self.mapper
        assert isinstance(mapper, LedgerMapper)
        processing = self._collect(objs)
        token = current_envelope.set(envelope)
        try:
            return [mapper.to_row(e) for e in processing.events]
        finally:
            current_envelope.reset(token)

    def _advance_one(self, aggregate_id: UUID, moment: datetime, run: ClockRun) -> None:
        ctx = c.CommandContext(occurred_at=moment, source="system", actor="clock")
        run.note(self.advance(c.Advance(aggregate_id), ctx).position)

    def advance(self, cmd: c.Advance, ctx: c.CommandContext) -> Outcome:
        """Record what fell due on one aggregate by the command's moment (position 0: nothing)."""

        def use_case(ctx: c.CommandContext) -> Outcome:
            aggregate = self._find(cmd.aggregate_id)
            if not isinstance(aggregate, TimeDriven):
                self.store.set_timers({cmd.aggregate_id: None})
                return Outcome(cmd.aggregate_id, {}, 0)
            outcome = self._commit(ctx, aggregate, receipts.receipt_of, now=ctx.occurred_at)
            return outcome if outcome.recorded else Outcome(cmd.aggregate_id, outcome.receipt, 0)

        return self._run(ctx, use_case)

    def _record_days(self, moment: datetime, run: ClockRun) -> None:
        """A ClockTick for each UTC day begun since the daily timer fell due, up to `moment`,
        in one append (a test clock moved by a year records 365 days at once)."""
        due = self.store.timer(ids.DAILY_CLOCK_TIMER_ID) or moment
        day, ticks = due.date(), []
        while day <= moment.date():
            if not isinstance(self._find(ids.clock_tick_id(day)), ClockTick):
                ticks.append(ClockTick.record(day=day, occurred_at=datetime.combine(day, time(), tzinfo=UTC)))
            day += timedelta(days=1)
        envelope = Envelope(
            source="system",
            actor="clock",
            timers={ids.DAILY_CLOCK_TIMER_ID: datetime.combine(day, time(), tzinfo=UTC)},
        )
        token = current_envelope.set(envelope)
        try:
            recordings = self.save(*ticks) if ticks else []
        except IntegrityError:
            recordings = []  # another clock recorded these days first
        finally:
            current_envelope.reset(token)
        if not recordings:
            self.store.set_timers(envelope.timers)
        for recording in recordings:
            run.note(recording.notification.id)

    def advance_test_clock(self, to: datetime, ctx: c.CommandContext) -> Outcome:
        """Move the ledger's now forward to `to` (test clocks only; never back). What falls due by
        then is recorded before this answers, so the answer's position covers it."""
        if not self.allow_test_clock:
            raise TestClockDisabled("the test clock is off (LEDGER_ALLOW_TEST_CLOCK is not true)")
        to = ensure_utc(to, "advance_to")

        def use_case(ctx: c.CommandContext) -> Outcome:
            clock = self._find(ids.TEST_CLOCK_ID)
            if isinstance(clock, TestClock):
                clock.advance(to=to, now=self.now())
            else:
                clock = TestClock.start(to=to, now=self.now())
            return self._commit(ctx, clock, {"now": to.isoformat()})

        moved = self._run(c.CommandContext(**{**vars(ctx), "occurred_at": self.now()}), use_case)
        run = self.advance_due(to)
        return Outcome(moved.resource_id, moved.receipt, max(moved.position, run.position))

    def resolve_alert(self, cmd: c.ResolveAlert, ctx: c.CommandContext) -> Outcome:
        def use_case(ctx: c.CommandContext) -> Outcome:
            alert = self._get(Alert, cmd.alert_id, "alert")
            alert.resolve(note=cmd.note, occurred_at=ctx.occurred_at)
            return self._commit(ctx, alert, receipts.alert_receipt(alert))

        return self._run(ctx, use_case)


def _plan_terms(cmd: c.DefinePlan | c.RevisePlan) -> dict[str, Any]:
    return {
        "name": cmd.name,
        "currency": cmd.currency,
        "amount": cmd.amount,
        "interval": cmd.interval,
        "interval_count": cmd.interval_count,
        "trial_days": cmd.trial_days,
        "quotas": cmd.quotas,
        "usage_prices": normalized_usage_prices(cmd.usage_prices),
    }


def now() -> datetime:
    return datetime.now(UTC)


def new_correlation_id() -> UUID:
    return uuid4()
