"""Stripe webhooks into the ledger, exactly once and converging under any delivery order.

Each verified Stripe event is appended, in one transaction, as:
- a `StripeEventRecord` stream (id from the Stripe event id: the deduplication key) keeping the
  event verbatim, translated or not;
- the domain events that bring the ledger's mirror of the event's object up to the object's
  snapshot;
- a `StripeObjectSync` stream per Stripe object, remembering the newest snapshot applied.

Stripe delivers events late, twice and out of order. The ledger does not replay them as a
sequence of commands; it reconciles: a snapshot older than the newest already applied to its
object (by Stripe's `created`, then lifecycle rank, then event id) changes nothing, and a newer
one emits only the events needed to reach its state, creating what is missing (customer, plan
from the price, subscription, invoice, payment) under ids derived from Stripe's ids (uuid5). So
`invoice.paid` before `invoice.finalized`, or `customer.subscription.updated` before `created`,
end in the same state as the natural order. Times come from the objects (start_date,
status_transitions...) rather than from delivery, for the same reason.

One real charge is one payment, keyed by its PaymentIntent, whichever of `invoice.paid`,
`invoice_payment.paid` and `payment_intent.succeeded` arrives first. Since API 2025-03-31 only an
`invoice_payment` says which PaymentIntent paid which invoice; what it said is kept per invoice
(`StripeInvoicePayments`), and the invoice is settled (its payments created if missing, attached,
succeeded and applied) whenever both the invoice and the link are known. An invoice of such a
version that Stripe reports paid before any `invoice_payment` named its payment waits for it,
rather than inventing a second payment.

Nothing is recorded outside business time: the event's `created` and every moment taken from an
object must lie in [2000-01-01, the ledger's now + 5 min] (a trial's end or a due date, which may
be ahead, within five years), and every event about to be appended is checked again; else
TimeOutOfRange (422), and nothing of the event is recorded, not even verbatim. So are values
beyond the ledger's limits (`ingest.stripe.BeyondLimits`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import event
from eventsourcing.persistence import IntegrityError

from application.ledger import Ledger
from domain import ids
from domain.base import LedgerAggregate
from domain.business_time import EPOCH, check_business_time
from domain.customer import Customer
from domain.errors import DomainError, TimeOutOfRange
from domain.invoice import DRAFT, OPEN, Invoice
from domain.payment import FAILED, PENDING, REFUNDED, SUCCEEDED, Payment
from domain.plan import Plan
from domain.subscription import ACTIVE, CANCELED, PAST_DUE, TRIALING, Subscription
from infra.eventstore import Envelope, current_envelope
from ingest import stripe as s

SOURCE = ACTOR = "stripe"
MAX_ATTEMPTS = 8
# How far ahead a moment still to come may lie (a trial's end: Stripe allows two years; a due date).
SCHEDULE_HORIZON = timedelta(days=5 * 366)

A = TypeVar("A", bound=LedgerAggregate)

SUBSCRIPTION_RANK = {"incomplete": 0, "trialing": 1, "active": 2, "past_due": 2, "unpaid": 2, "paused": 2}
INVOICE_RANK = {"draft": 0, "open": 1, "paid": 2, "void": 2, "uncollectible": 2}


class StripeEventRecord(LedgerAggregate):
    """A Stripe event exactly as received, so an auditor can see what Stripe said."""

    @event("Received")
    def __init__(
        self,
        id: UUID,
        stripe_event_id: str,
        stripe_type: str,
        created: int,
        payload: dict[str, Any],
        translated: bool,
        note: str | None,
        customer_id: UUID | None,
        occurred_at: datetime,
    ) -> None:
        self.stripe_event_id = stripe_event_id
        self.stripe_type = stripe_type
        self.created = created
        self.payload = payload
        self.translated = translated
        self.note = note
        self.customer_id = customer_id


class StripeObjectSync(LedgerAggregate):
    """The newest snapshot of one Stripe object applied to the ledger (and, for customers, the
    snapshot itself: a customer is registered once a currency is known)."""

    @event("Synced")
    def __init__(
        self,
        id: UUID,
        stripe_id: str,
        order: list[Any],
        snapshot: dict[str, Any] | None,
        occurred_at: datetime,
    ) -> None:
        self.stripe_id = stripe_id
        self.order = order
        self.snapshot = snapshot

    def is_newer(self, order: list[Any]) -> bool:
        return order > self.order

    def advance(self, *, order: list[Any], snapshot: dict[str, Any] | None, occurred_at: datetime) -> None:
        if order <= self.order:
            raise DomainError("a snapshot only replaces an older one")
        self._advance(order=order, snapshot=snapshot, occurred_at=occurred_at)

    @event("Advanced")
    def _advance(self, order: list[Any], snapshot: dict[str, Any] | None, occurred_at: datetime) -> None:
        self.order = order
        self.snapshot = snapshot if snapshot is not None else self.snapshot


class StripeInvoicePayments(LedgerAggregate):
    """The payments Stripe said paid one invoice (`invoice_payment` objects, or an invoice of an
    API version before 2025-03-31 naming its PaymentIntent): per payment reference (pi_..., or a
    lone charge's id), the amount, when it was created and paid, and whether the ledger's invoice
    has had it applied. Kept under an id derived from the invoice's."""

    @event("Linked")
    def __init__(self, id: UUID, stripe_invoice: str, occurred_at: datetime) -> None:
        self.stripe_invoice = stripe_invoice
        self.payments: dict[str, dict[str, Any]] = {}

    def link(self, *, reference: str, amount: int, created: int, paid_at: int, occurred_at: datetime) -> None:
        if reference not in self.payments:
            self._add(
                reference=reference, amount=amount, created=created, paid_at=paid_at, occurred_at=occurred_at
            )

    @event("PaymentAdded")
    def _add(self, reference: str, amount: int, created: int, paid_at: int, occurred_at: datetime) -> None:
        self.payments[reference] = {
            "amount": amount,
            "created": created,
            "paid_at": paid_at,
            "applied": False,
        }

    def mark_applied(self, *, reference: str, occurred_at: datetime) -> None:
        if not self.payments[reference]["applied"]:
            self._applied(reference=reference, occurred_at=occurred_at)

    @event("PaymentApplied")
    def _applied(self, reference: str, occurred_at: datetime) -> None:
        self.payments[reference] = {**self.payments[reference], "applied": True}


def _payments_id(stripe_invoice: str) -> UUID:
    return ids.stripe_sync_id(f"{stripe_invoice}#payments")  # '#' is never in a Stripe id


class _Snapshot(Protocol):
    def occurred(self) -> s.Moments: ...

    def scheduled(self) -> s.Moments: ...


@dataclass(frozen=True)
class StripeOutcome:
    status: Literal["accepted", "duplicate"]
    position: int
    translated: bool
    note: str | None = None


@dataclass
class _Work:
    """The aggregates one Stripe event loads and changes, saved together at the end."""

    ledger: Ledger
    loaded: dict[UUID, LedgerAggregate | None] = field(default_factory=dict)

    def find(self, cls: type[A], aggregate_id: UUID) -> A | None:
        if aggregate_id not in self.loaded:
            found: Any
            try:
                found = self.ledger.repository.get(aggregate_id)
            except AggregateNotFoundError:
                found = None
            self.loaded[aggregate_id] = found if isinstance(found, LedgerAggregate) else None
        aggregate = self.loaded[aggregate_id]
        return aggregate if isinstance(aggregate, cls) else None

    def add(self, aggregate: A) -> A:
        self.loaded[aggregate.id] = aggregate
        return aggregate

    def changed(self) -> list[LedgerAggregate]:
        return [a for a in self.loaded.values() if a is not None and a.pending_events]


class StripeSync:
    def __init__(self, ledger: Ledger, *, default_currency: str) -> None:
        self.ledger = ledger
        self.default_currency = default_currency

    def receive(self, stripe_event: s.StripeEvent) -> StripeOutcome:
        """Record a verified Stripe event once. TimeOutOfRange or BeyondLimits (both 422) if it
        carries a moment or a value the ledger cannot hold: then nothing is recorded."""
        now = self.ledger.now()
        check_business_time(stripe_event.created_at, now, "created")
        record_id = ids.stripe_event_id(stripe_event.id)
        for _ in range(MAX_ATTEMPTS):
            found = self.ledger.store.existing_streams([record_id])
            if record_id in found:
                return StripeOutcome("duplicate", found[record_id][0], translated=False)
            try:
                return self._apply(stripe_event, record_id, now)
            except IntegrityError:
                continue  # another delivery changed the same objects: reconcile again
        raise ConcurrentStripeChange("the Stripe objects kept changing; Stripe will retry")

    def _apply(self, stripe_event: s.StripeEvent, record_id: UUID, now: datetime) -> StripeOutcome:
        work = _Work(self.ledger)
        note: str | None = None
        try:
            translated = self._translate(work, stripe_event, now)
            _check_recorded_times(work, now)
        except (TimeOutOfRange, s.BeyondLimits):
            raise  # beyond the ledger's limits: refused, and nothing of it recorded
        except (s.UnreadableObject, DomainError) as refused:
            work = _Work(self.ledger)  # nothing of a half translation is kept
            translated, note = False, f"not translated: {refused}"
        customer_ref = stripe_event.customer_ref
        record = StripeEventRecord(
            id=record_id,
            stripe_event_id=stripe_event.id,
            stripe_type=stripe_event.type,
            created=stripe_event.created,
            payload=stripe_event.payload,
            translated=translated,
            note=note,
            customer_id=ids.customer_id(customer_ref) if customer_ref else None,
            occurred_at=stripe_event.created_at,
        )
        # Mirrored subscriptions follow the ledger's clock too: caught up to now, timers kept.
        timers = self.ledger.catch_up(work.changed(), now)
        aggregates = [*work.changed(), record]
        envelope = Envelope(
            source=SOURCE,
            actor=ACTOR,
            correlation_id=record_id,
            causation_id=record_id,
            reason=stripe_event.type,
            customers={a.id: a.owner_customer_id for a in aggregates},
            timers=timers,
        )
        token = current_envelope.set(envelope)
        try:
            recordings = self.ledger.save(*aggregates)
        finally:
            current_envelope.reset(token)
        position = max(r.notification.id for r in recordings)
        return StripeOutcome("accepted", position, translated, note)

    # ------------------------------------------------------------------ dispatch

    def _translate(self, work: _Work, e: s.StripeEvent, now: datetime) -> bool:
        at = e.created_at
        if e.type in s.CUSTOMER_TYPES:
            customer = s.CustomerSnapshot.read(e.object)
            self._customer(work, e, _within_time(customer, now), at)
        elif e.type in s.SUBSCRIPTION_TYPES:
            subscription = s.SubscriptionSnapshot.read(e.object)
            self._subscription(work, e, _within_time(subscription, now), at)
        elif e.type in s.INVOICE_TYPES:
            self._invoice(work, e, _within_time(s.InvoiceSnapshot.read(e.object), now), at)
        elif e.type in s.PAYMENT_INTENT_TYPES:
            intent = s.PaymentIntentSnapshot.read(e.object)
            self._payment_intent(work, e, _within_time(intent, now), at)
        elif e.type in s.CHARGE_TYPES:
            self._charge(work, e, _within_time(s.ChargeSnapshot.read(e.object), now), at)
        elif e.type in s.INVOICE_PAYMENT_TYPES:
            link = s.InvoicePaymentSnapshot.read(e.object)
            self._invoice_payment_paid(work, e, _within_time(link, now), at)
        else:
            return False
        return True

    def _newer(
        self, work: _Work, stripe_id: str, e: s.StripeEvent, rank: int, snapshot: dict[str, Any] | None = None
    ) -> bool:
        """Record that this snapshot is the newest of its object; False if an equal or newer one
        was applied already (then nothing of it is applied)."""
        order = [e.created, rank, e.id]
        sync = work.find(StripeObjectSync, ids.stripe_sync_id(stripe_id))
        if sync is None:
            work.add(
                StripeObjectSync(
                    id=ids.stripe_sync_id(stripe_id),
                    stripe_id=stripe_id,
                    order=order,
                    snapshot=snapshot,
                    occurred_at=e.created_at,
                )
            )
            return True
        if not sync.is_newer(order):
            return False
        sync.advance(order=order, snapshot=snapshot, occurred_at=e.created_at)
        return True

    # ------------------------------------------------------------------ customers and plans

    def _customer(self, work: _Work, e: s.StripeEvent, snap: s.CustomerSnapshot, at: datetime) -> None:
        remembered = {
            "email": snap.email,
            "name": snap.name,
            "metadata": snap.metadata,
            "currency": snap.currency,
        }
        if not self._newer(work, snap.id, e, 1 if snap.deleted else 0, remembered):
            return
        customer = work.find(Customer, ids.customer_id(snap.id))
        if snap.deleted:
            if customer is not None and not customer.is_archived:
                customer.archive(occurred_at=at)
            return
        if customer is None:
            if snap.currency is not None:  # otherwise registered when a currency is known
                self._ensure_customer(work, snap.id, snap.currency, snap.created or at)
            return
        if customer.is_archived:
            return
        customer.update(
            email=snap.email,
            name=snap.name,
            tax_rate_bps=None,
            metadata=snap.metadata,
            occurred_at=at,
        )

    def _ensure_customer(self, work: _Work, stripe_id: str, currency: str | None, at: datetime) -> Customer:
        """The ledger customer of a Stripe customer, registered from the newest customer snapshot
        seen (if any) when missing. Its external_id is the `cus_...` id."""
        customer = work.find(Customer, ids.customer_id(stripe_id))
        if customer is not None:
            return customer
        sync = work.find(StripeObjectSync, ids.stripe_sync_id(stripe_id))
        known: dict[str, Any] = (sync.snapshot if sync is not None else None) or {}
        return work.add(
            Customer.register(
                external_id=stripe_id,
                email=known.get("email") or f"{stripe_id}@customers.stripe.invalid",
                name=known.get("name") or "",
                currency=known.get("currency") or currency or self.default_currency,
                tax_rate_bps=0,
                metadata=known.get("metadata") or {},
                occurred_at=at,
            )
        )

    def _ensure_plan(self, work: _Work, price: s.PriceSnapshot, at: datetime) -> Plan:
        """A Stripe price is immutable: its plan (code = price id) is defined once."""
        plan = work.find(Plan, ids.plan_id(price.id))
        if plan is not None:
            return plan
        return work.add(
            Plan.define(
                code=price.id,
                name=price.name,
                currency=price.currency,
                amount=price.unit_amount,
                interval=price.interval,
                interval_count=price.interval_count,
                trial_days=0,
                quotas={},
                usage_prices={},
                occurred_at=at,
            )
        )

    # ------------------------------------------------------------------ subscriptions

    def _subscription(
        self, work: _Work, e: s.StripeEvent, snap: s.SubscriptionSnapshot, at: datetime
    ) -> None:
        ended = snap.status in ("canceled", "incomplete_expired")
        if not self._newer(work, snap.id, e, 3 if ended else SUBSCRIPTION_RANK.get(snap.status, 2)):
            return
        plan = self._ensure_plan(work, snap.price, snap.start_date)
        sub = work.find(Subscription, ids.stripe_object_id(snap.id))
        if sub is None:
            if snap.status == "incomplete" or snap.status == "incomplete_expired":
                return  # never started
            customer = self._ensure_customer(work, snap.customer, plan.currency, snap.start_date)
            trial_days = 0
            if snap.trial_end is not None and snap.trial_end > snap.start_date:
                trial_days = math.ceil((snap.trial_end - snap.start_date) / timedelta(days=1))
            sub = work.add(
                Subscription.start(
                    customer_id=customer.id,
                    plan=plan,
                    quantity=snap.quantity,
                    trial_days=trial_days,
                    occurred_at=snap.start_date,
                    subscription_id=ids.stripe_object_id(snap.id),
                    billed_by="external",  # Stripe invoices it; the ledger mirrors those invoices
                )
            )
        if sub.status == CANCELED:
            return
        if sub.status == TRIALING and snap.status != "trialing" and not sub.cancel_at_period_end:
            converted = min(t for t in (snap.trial_end, sub.trial_end, at) if t is not None)
            sub.end_trial(occurred_at=converted)
        if plan.id != sub.plan_id or snap.quantity != sub.quantity:
            sub.change(plan=plan, quantity=snap.quantity, occurred_at=at)
        if snap.current_period_start is not None and sub.status in (ACTIVE, PAST_DUE):
            # Stripe says which period runs: record the transitions due by its start.
            sub.advance(snap.current_period_start)
        if not ended:
            if snap.cancel_at_period_end and not sub.cancel_at_period_end:
                sub.schedule_cancellation(occurred_at=snap.canceled_at or at)
            elif not snap.cancel_at_period_end and sub.cancel_at_period_end:
                sub.withdraw_cancellation(occurred_at=at)
            return
        sub.cancel_now(occurred_at=snap.ended_at or snap.canceled_at or at)

    # ------------------------------------------------------------------ invoices and payments

    def _invoice(self, work: _Work, e: s.StripeEvent, snap: s.InvoiceSnapshot, at: datetime) -> None:
        if not self._newer(work, snap.id, e, INVOICE_RANK.get(snap.status, 1)):
            return
        invoice_id = ids.stripe_object_id(snap.id)
        invoice = work.find(Invoice, invoice_id)
        if invoice is None:
            customer = self._ensure_customer(work, snap.customer, snap.currency, snap.created)
            invoice = work.add(
                Invoice.draft(
                    customer_id=customer.id,
                    subscription_id=ids.stripe_object_id(snap.subscription) if snap.subscription else None,
                    currency=snap.currency,
                    tax_rate_bps=0,
                    discount=0,
                    occurred_at=snap.created,
                    invoice_id=invoice_id,
                )
            )
        if snap.status == "draft":
            return
        finalized_at = snap.finalized_at or snap.created
        if invoice.status == DRAFT and snap.status in ("open", "paid", "uncollectible"):
            for line in snap.lines:
                if line.amount >= 0 and line.unit_amount >= 0:
                    invoice.add_line(
                        description=line.description,
                        quantity=line.quantity,
                        unit_amount=line.unit_amount,
                        period_start=None,
                        period_end=None,
                        occurred_at=finalized_at,
                    )
            invoice.finalize_external(
                number=snap.number or snap.id,
                due_date=max(snap.due_date or finalized_at.date(), finalized_at.date()),
                subtotal=snap.subtotal,
                discount=max(0, snap.subtotal + snap.tax - snap.total),
                tax=snap.tax,
                total=snap.total,
                occurred_at=finalized_at,
            )
        sub = work.find(Subscription, invoice.subscription_id) if invoice.subscription_id else None
        reference = self._payment_of(work, snap)
        if snap.status == "paid":
            paid_at = snap.paid_at or at
            if reference is not None and snap.amount_paid > 0:
                self._link(
                    work, snap.id, reference, snap.amount_paid, snap.finalized_at or snap.created, paid_at
                )
            self._settle(work, snap.id, attempts=snap.attempt_count)
            self._recover(work, invoice, paid_at)
        elif snap.status == "open" and snap.attempted and snap.attempt_count > 0:
            if reference is not None:  # else the failed PaymentIntent records the failure
                self._invoice_payment(work, snap, invoice, reference, FAILED, at)
            if (
                sub is not None
                and sub.status in (ACTIVE, PAST_DUE)
                and str(invoice.id) not in sub.past_due_invoice_ids
            ):
                sub.mark_past_due(invoice_id=invoice.id, occurred_at=at)
        elif snap.status == "void" and invoice.status in (DRAFT, OPEN) and invoice.amount_paid == 0:
            invoice.void(occurred_at=snap.voided_at or at)
        elif snap.status == "uncollectible" and invoice.status == OPEN:
            invoice.mark_uncollectible(occurred_at=snap.marked_uncollectible_at or at)
        if snap.status == "open":
            self._settle(work, snap.id)  # an invoice_payment that came before the invoice

    def _payment_of(self, work: _Work, snap: s.InvoiceSnapshot) -> str | None:
        """The reference of the payment of an invoice: the PaymentIntent it names (API versions
        before 2025-03-31, or its payments where included), else one an `invoice_payment` named;
        an older invoice that names none was paid without one (out of band, a lone charge) and
        its payment is keyed by the invoice. None: a newer invoice whose payment is not known yet."""
        if snap.payment_intent is not None:
            return snap.payment_intent
        links = work.find(StripeInvoicePayments, _payments_id(snap.id))
        if links is not None and links.payments:
            return min(links.payments)
        return f"{snap.id}/payment" if snap.names_its_payment_intent else None

    def _link(
        self,
        work: _Work,
        stripe_invoice: str,
        reference: str,
        amount: int,
        created: datetime,
        paid_at: datetime,
    ) -> None:
        links = work.find(StripeInvoicePayments, _payments_id(stripe_invoice))
        if links is None:
            links = work.add(
                StripeInvoicePayments(
                    id=_payments_id(stripe_invoice), stripe_invoice=stripe_invoice, occurred_at=paid_at
                )
            )
        links.link(
            reference=reference,
            amount=amount,
            created=int(created.timestamp()),
            paid_at=int(paid_at.timestamp()),
            occurred_at=paid_at,
        )

    def _settle(self, work: _Work, stripe_invoice: str, attempts: int = 0) -> None:
        """Apply to the ledger's invoice every payment Stripe linked to it that is not applied
        yet: the payment (keyed by its PaymentIntent) is created if no event made it yet,
        attached to the invoice if it was made without one, and brought to succeeded. Needs
        both the invoice and the links; whichever arrives last settles."""
        links = work.find(StripeInvoicePayments, _payments_id(stripe_invoice))
        invoice = work.find(Invoice, ids.stripe_object_id(stripe_invoice))
        if links is None or invoice is None or invoice.status == DRAFT:
            return
        for reference, link in sorted(links.payments.items()):
            if link["applied"]:
                continue
            paid_at = datetime.fromtimestamp(link["paid_at"], UTC)
            payment = work.find(Payment, ids.stripe_object_id(reference))
            if payment is None:
                payment = work.add(
                    Payment.initiate(
                        customer_id=invoice.customer_id,
                        invoice_id=invoice.id,
                        amount=link["amount"],
                        currency=invoice.currency,
                        provider_reference=reference,
                        occurred_at=datetime.fromtimestamp(link["created"], UTC),
                        payment_id=ids.stripe_object_id(reference),
                    )
                )
            elif payment.invoice_id is None:
                payment.attach_to_invoice(invoice_id=invoice.id, occurred_at=paid_at)
            self._bring_payment_to(payment, SUCCEEDED, max(attempts, 1), paid_at, None, None)
            amount = min(link["amount"], invoice.amount_remaining)
            if invoice.status == OPEN and amount > 0:
                invoice.apply_payment(payment_id=payment.id, amount=amount, occurred_at=paid_at)
            links.mark_applied(reference=reference, occurred_at=paid_at)
            self._recover(work, invoice, paid_at)

    @staticmethod
    def _recover(work: _Work, invoice: Invoice, at: datetime) -> None:
        """A paid invoice no longer holds its subscription past_due."""
        sub = work.find(Subscription, invoice.subscription_id) if invoice.subscription_id else None
        if sub is not None and sub.status == PAST_DUE and str(invoice.id) in sub.past_due_invoice_ids:
            sub.recover(invoice_id=invoice.id, occurred_at=at)

    def _invoice_payment(
        self,
        work: _Work,
        snap: s.InvoiceSnapshot,
        invoice: Invoice,
        reference: str,
        target: str,
        at: datetime,
    ) -> Payment:
        """The payment of an invoice (its payment intent), brought to `target` after
        `attempt_count` attempts: the failed ones before are recorded if they were not."""
        payment = work.find(Payment, ids.stripe_object_id(reference))
        if payment is None:
            payment = work.add(
                Payment.initiate(
                    customer_id=invoice.customer_id,
                    invoice_id=invoice.id,
                    amount=max(snap.amount_due, snap.amount_paid, 1),
                    currency=snap.currency,
                    provider_reference=reference,
                    occurred_at=snap.finalized_at or snap.created,
                    payment_id=ids.stripe_object_id(reference),
                )
            )
        self._bring_payment_to(payment, target, max(snap.attempt_count, 1), at, None, None)
        return payment

    @staticmethod
    def _bring_payment_to(
        payment: Payment, target: str, attempts: int, at: datetime, code: str | None, message: str | None
    ) -> None:
        if payment.status in (SUCCEEDED, REFUNDED):
            return  # a payment never goes back
        while payment.attempt < attempts:
            if payment.status == PENDING:
                payment.fail(failure_code=None, failure_message="attempt failed", occurred_at=at)
            payment.retry(occurred_at=at)
        if target == FAILED and payment.status == PENDING:
            payment.fail(failure_code=code, failure_message=message, occurred_at=at)
        elif target == SUCCEEDED:
            if payment.status == FAILED:
                payment.retry(occurred_at=at)
            payment.succeed(occurred_at=at)

    def _invoice_payment_paid(
        self, work: _Work, e: s.StripeEvent, snap: s.InvoicePaymentSnapshot, at: datetime
    ) -> None:
        """An invoice was paid by a payment (API 2025-03-31 and later): remember the link, and
        settle the invoice if the ledger has it. A payment made before the ledger knew its
        invoice is attached to it and succeeded at once."""
        if not self._newer(work, snap.id, e, 1 if snap.status == "paid" else 0):
            return
        if snap.status != "paid" or snap.payment is None or snap.amount_paid <= 0:
            return
        paid_at = snap.paid_at or at
        self._link(work, snap.invoice, snap.payment, snap.amount_paid, snap.created, paid_at)
        payment = work.find(Payment, ids.stripe_object_id(snap.payment))
        if payment is not None and work.find(Invoice, ids.stripe_object_id(snap.invoice)) is None:
            if payment.invoice_id is None:
                payment.attach_to_invoice(invoice_id=ids.stripe_object_id(snap.invoice), occurred_at=paid_at)
            self._bring_payment_to(payment, SUCCEEDED, payment.attempt, paid_at, None, None)
        self._settle(work, snap.invoice)

    def _payment_intent(
        self, work: _Work, e: s.StripeEvent, snap: s.PaymentIntentSnapshot, at: datetime
    ) -> None:
        succeeded = snap.status == "succeeded"
        if not self._newer(work, snap.id, e, 1 if succeeded else 0):
            return
        if snap.customer is None:
            raise s.UnreadableObject("a payment intent without a customer is not a ledger payment")
        payment = self._ensure_payment(
            work, snap.id, snap.customer, snap.invoice, snap.amount, snap.currency, snap.created
        )
        target = SUCCEEDED if succeeded else FAILED
        self._bring_payment_to(payment, target, payment.attempt, at, snap.failure_code, snap.failure_message)

    def _ensure_payment(
        self,
        work: _Work,
        reference: str,
        stripe_customer: str,
        stripe_invoice: str | None,
        amount: int,
        currency: str,
        created: datetime,
    ) -> Payment:
        """The ledger payment of a Stripe payment intent (or lone charge), created if missing."""
        payment = work.find(Payment, ids.stripe_object_id(reference))
        if payment is not None:
            return payment
        customer = self._ensure_customer(work, stripe_customer, currency, created)
        return work.add(
            Payment.initiate(
                customer_id=customer.id,
                invoice_id=ids.stripe_object_id(stripe_invoice) if stripe_invoice else None,
                amount=amount,
                currency=currency,
                provider_reference=reference,
                occurred_at=created,
                payment_id=ids.stripe_object_id(reference),
            )
        )

    def _charge(self, work: _Work, e: s.StripeEvent, snap: s.ChargeSnapshot, at: datetime) -> None:
        if not self._newer(work, snap.id, e, snap.amount_refunded):
            return
        if snap.customer is None:
            raise s.UnreadableObject("a charge without a customer is not a ledger payment")
        reference = snap.payment_intent or snap.id
        payment = self._ensure_payment(
            work, reference, snap.customer, snap.invoice, snap.amount, snap.currency, snap.created
        )
        self._bring_payment_to(payment, SUCCEEDED, payment.attempt, snap.created, None, None)
        refund = min(snap.amount_refunded, payment.amount) - payment.amount_refunded
        if refund > 0:
            payment.refund(amount=refund, occurred_at=at)


class ConcurrentStripeChange(Exception):
    """Reconciling kept conflicting with other deliveries; Stripe retries the webhook."""


S = TypeVar("S", bound=_Snapshot)


def _within_time(snapshot: S, now: datetime) -> S:
    """The snapshot, if every moment the ledger would take from it lies in business time: what
    happened in [2000-01-01, now + 5 min], what is still to come within five years."""
    for name, moment in snapshot.occurred().items():
        if moment is not None:
            check_business_time(moment, now, name)
    horizon = now + SCHEDULE_HORIZON
    for name, moment in snapshot.scheduled().items():
        if moment is not None and not EPOCH <= moment <= horizon:
            raise TimeOutOfRange(
                f"{name} {moment.isoformat()} is not between {EPOCH.date()} and five years from now",
                field=name,
            )
    return snapshot


def _check_recorded_times(work: _Work, now: datetime) -> None:
    """The last guard: no event about to be appended happened outside business time, whatever
    a rule derived it from (a renewal at a period's end, a trial's conversion)."""
    for aggregate in work.changed():
        for pending in aggregate.pending_events:
            occurred_at = getattr(pending, "occurred_at", None)
            if isinstance(occurred_at, datetime):
                check_business_time(occurred_at, now, f"{type(aggregate).__name__}.occurred_at")
