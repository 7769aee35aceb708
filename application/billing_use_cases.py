"""The billing commands and the invoice preview (SPEC 7): coupons and discounts, credit notes,
the upcoming invoice. Use cases of the `Ledger` application (its methods of the same names call
these): each loads what it needs, lets the aggregates decide and saves them in one append
(`Ledger._commit`), like every other use case."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from application import commands as c
from application import receipts
from application.billing import BillingWork
from domain import ids
from domain.billing import split_credit_note
from domain.coupon import Coupon
from domain.credit_note import (
    CreditNote,
    assign_credit_note_number,
    credit_note_amount,
    credit_note_number,
)
from domain.customer import Customer
from domain.errors import AlreadyExists, InvalidValue, InvoiceNotOpen, NotFound
from domain.invoice import OPEN, PAID, Invoice
from domain.payment import Payment
from domain.subscription import Subscription

if TYPE_CHECKING:
    from application.ledger import Ledger
    from application.outcome import Outcome


# ------------------------------------------------------------------ coupons and discounts


def define_coupon(ledger: Ledger, cmd: c.DefineCoupon, ctx: c.CommandContext) -> Outcome:
    """Define a coupon; the same definition again answers as the first time."""

    def use_case(ctx: c.CommandContext) -> Outcome:
        coupon = Coupon.define(
            code=cmd.code,
            name=cmd.name,
            percent_off=cmd.percent_off,
            amount_off=cmd.amount_off,
            currency=cmd.currency,
            duration=cmd.duration,
            duration_in_periods=cmd.duration_in_periods,
            occurred_at=ctx.occurred_at,
        )
        existing = ledger._find(ids.coupon_id(cmd.code))
        if isinstance(existing, Coupon):
            if existing.terms() != coupon.terms():
                raise AlreadyExists(f"coupon '{cmd.code}' exists with other terms", field="code")
            return ledger._commit(ctx, existing, receipts.coupon_receipt(existing), created=True)
        return ledger._commit(ctx, coupon, receipts.coupon_receipt(coupon), created=True)

    return ledger._run(ctx, use_case)


def _coupon(ledger: Ledger, code: str) -> Coupon:
    coupon = ledger._find(ids.coupon_id(code))
    if not isinstance(coupon, Coupon):
        raise NotFound(f"no coupon with code '{code}'", field="coupon")
    return coupon


def apply_discount(ledger: Ledger, cmd: c.ApplyDiscount, ctx: c.CommandContext) -> Outcome:
    """A coupon for a subscription's next invoices (or all of a customer's): once, for a
    number of invoices, or forever. A subscription's own discount wins over its customer's."""

    def use_case(ctx: c.CommandContext) -> Outcome:
        coupon = _coupon(ledger, cmd.coupon)
        if cmd.subscription_id is not None:
            sub = ledger._subscription(cmd.subscription_id, ctx.occurred_at)
            coupon.check_currency_of(sub.currency)
            sub.apply_discount(discount=coupon.as_applied(), occurred_at=ctx.occurred_at)
            return ledger._commit(ctx, sub, receipts.subscription_receipt)
        if cmd.customer_id is None:
            raise InvalidValue("a discount applies to a subscription or a customer", field="coupon")
        customer = ledger._get(Customer, cmd.customer_id, "customer")
        coupon.check_currency_of(customer.currency)
        customer.apply_discount(discount=coupon.as_applied(), occurred_at=ctx.occurred_at)
        return ledger._commit(ctx, customer, receipts.customer_receipt(customer))

    return ledger._run(ctx, use_case)


# ------------------------------------------------------------------ credit notes


def issue_credit_note(ledger: Ledger, cmd: c.IssueCreditNote, ctx: c.CommandContext) -> Outcome:
    """A credit note on an open or paid invoice: it lowers what remains; beyond that it is
    refunded (on the invoice's succeeded payments, largest first) and/or credited to the
    customer's balance. Numbered gaplessly in its own sequence."""

    def use_case(ctx: c.CommandContext) -> Outcome:
        invoice = ledger._get(Invoice, cmd.invoice_id, "invoice")
        if invoice.status not in (OPEN, PAID):
            raise InvoiceNotOpen(f"a {invoice.status} invoice cannot be credited")
        amount = credit_note_amount(cmd.amount, cmd.lines, invoice.lines)
        split = split_credit_note(
            amount=amount,
            invoice_total=max(invoice.total, 0),
            already_credited=invoice.amount_credited,
            amount_remaining=invoice.amount_remaining,
            refund_amount=cmd.refund_amount,
            credit_amount=cmd.credit_amount,
        )
        sequence = ledger.store.stream_version(ids.CREDIT_NOTE_NUMBERING_ID)
        credit_note_id = ids.credit_note_id(credit_note_number(sequence + 1))
        assigned = assign_credit_note_number(
            last_sequence=sequence, credit_note_id=credit_note_id, occurred_at=ctx.occurred_at
        )
        note = CreditNote.issue(
            invoice_id=invoice.id,
            customer_id=invoice.customer_id,
            currency=invoice.currency,
            number=assigned.number,
            reason=cmd.reason,
            amount=amount,
            lines=list(cmd.lines or []),
            split=split,
            memo=cmd.memo,
            occurred_at=ctx.occurred_at,
        )
        invoice.credit(
            credit_note_id=credit_note_id,
            amount=amount,
            against_remaining=split.against_remaining,
            occurred_at=ctx.occurred_at,
            to_balance=split.credit,
        )
        changed: list[Any] = [invoice, assigned]
        if split.credit:
            customer = ledger._get(Customer, invoice.customer_id, "customer")
            customer.adjust_balance(
                currency=invoice.currency,
                amount=split.credit,
                reason="credit_note",
                reference=assigned.number,
                occurred_at=ctx.occurred_at,
            )
            changed.append(customer)
        changed.extend(_refund_payments_of(ledger, invoice, split.refund, ctx.occurred_at))
        return ledger._commit(ctx, note, receipts.credit_note_receipt, *changed, created=True)

    return ledger._run(ctx, use_case)


def _refund_payments_of(ledger: Ledger, invoice: Invoice, amount: int, at: datetime) -> list[Payment]:
    """Refund `amount` on the invoice's succeeded payments, the largest refundable first."""
    if amount <= 0:
        return []
    payments = [p for p in (ledger._find(pid) for pid in invoice.payment_ids) if isinstance(p, Payment)]
    refundable = sorted(
        (p for p in payments if p.status in ("succeeded", "refunded") and p.refundable > 0),
        key=lambda p: (-p.refundable, str(p.id)),
    )
    if sum(p.refundable for p in refundable) < amount:
        raise InvalidValue(
            f"the invoice's payments can refund {sum(p.refundable for p in refundable)}, not {amount}",
            field="refund_amount",
        )
    left, refunded = amount, []
    for payment in refundable:
        share = min(left, payment.refundable)
        payment.refund(amount=share, occurred_at=at)
        refunded.append(payment)
        left -= share
        if left == 0:
            break
    return refunded


# ------------------------------------------------------------------ preview


def upcoming_invoice(
    ledger: Ledger,
    customer_id: UUID,
    subscription_id: UUID | None = None,
    known_at: datetime | None = None,
) -> dict[str, Any]:
    """The invoice the next period boundary would make if it came now (or, with `known_at`, as
    the ledger knew it then: only what was recorded by then): the same engine, on copies of the
    aggregates, saving nothing."""
    work = BillingWork(ledger, as_of=ledger.store.position_at(known_at) if known_at else None)
    customer = work.find(customer_id)
    if not isinstance(customer, Customer):
        raise NotFound(f"no customer with id {customer_id}")
    sub = _upcoming_subscription(ledger, work, customer, subscription_id)
    boundary = sub.next_transition_at
    if boundary is None:
        raise InvalidValue("the subscription has no next period", field="subscription_id")
    sub.advance(max(boundary, known_at or ledger.now()))
    ledger.billing._on_new_events(sub, work)
    drafted = [a for a in work.loaded.values() if isinstance(a, Invoice) and a.pending_events]
    upcoming = max(drafted, key=lambda i: i.drafted_at) if drafted else None
    if upcoming is None:
        raise NotFound("nothing would be billed at the next period boundary")
    return receipts.invoice_receipt(upcoming)


def _upcoming_subscription(
    ledger: Ledger, work: BillingWork, customer: Customer, subscription_id: UUID | None
) -> Subscription:
    """The subscription asked for, or the customer's latest that is not canceled."""
    if subscription_id is not None:
        sub = work.find(subscription_id)
        if not isinstance(sub, Subscription):
            raise NotFound(f"no subscription with id {subscription_id}", field="subscription_id")
        if sub.customer_id != customer.id:
            raise InvalidValue("the subscription belongs to another customer", field="subscription_id")
        return sub
    for candidate in reversed(ledger.store.subscriptions_of(customer.id)):
        found = work.find(candidate)
        if isinstance(found, Subscription) and found.status != "canceled":
            return found
    raise NotFound(f"customer {customer.id} has no live subscription")
