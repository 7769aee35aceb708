from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import DomainEvent, event

from domain import ids
from domain.base import LedgerAggregate
from domain.customer import check_tax_rate
from domain.errors import (
    EmptyInvoice,
    InvalidTransition,
    InvalidValue,
    InvoiceNotDraft,
    InvoiceNotOpen,
    Overpayment,
)
from domain.money import MAX_AMOUNT, charge, check_amount, check_currency, divide_half_even

DRAFT, OPEN, PAID, VOID, UNCOLLECTIBLE = "draft", "open", "paid", "void", "uncollectible"
BPS = 10_000


def compute_tax(taxable: int, tax_rate_bps: int) -> int:
    """Tax is computed once per invoice on (subtotal - discount), rounded half-even."""
    return divide_half_even(taxable * tax_rate_bps, BPS)


class Invoice(LedgerAggregate):
    @classmethod
    def draft(
        cls,
        *,
        customer_id: UUID,
        subscription_id: UUID | None,
        currency: str,
        tax_rate_bps: int,
        discount: int,
        occurred_at: datetime,
        invoice_id: UUID | None = None,
    ) -> Invoice:
        check_currency(currency)
        if discount < 0:
            raise InvalidValue("discount cannot be negative", field="discount")
        check_amount(discount, "discount")
        check_tax_rate(tax_rate_bps)
        return cls._created_with_id(
            invoice_id,
            "Drafted",
            customer_id=customer_id,
            subscription_id=subscription_id,
            currency=currency,
            tax_rate_bps=tax_rate_bps,
            discount=discount,
            occurred_at=occurred_at,
        )

    @event("Drafted")
    def __init__(
        self,
        customer_id: UUID,
        subscription_id: UUID | None,
        currency: str,
        tax_rate_bps: int,
        discount: int,
        occurred_at: datetime,
    ) -> None:
        self.customer_id = customer_id
        self.subscription_id = subscription_id
        self.currency = currency
        self.tax_rate_bps = tax_rate_bps
        self.discount = discount
        self.lines: list[dict[str, Any]] = []
        self.status = DRAFT
        self.number: str | None = None
        self.due_date: date | None = None
        self.subtotal = 0
        self.tax = 0
        self.total = 0
        self.amount_paid = 0
        self.amount_remaining = 0
        self.drafted_at = occurred_at
        self.finalized_at: datetime | None = None

    def add_line(
        self,
        *,
        description: str,
        quantity: int,
        unit_amount: int,
        period_start: datetime | None,
        period_end: datetime | None,
        occurred_at: datetime,
    ) -> None:
        if self.status != DRAFT:
            raise InvoiceNotDraft("lines can only be added to a draft invoice")
        if quantity < 1:
            raise InvalidValue("a line's quantity is at least 1", field="quantity")
        if unit_amount < 0:
            raise InvalidValue("a line's unit_amount cannot be negative", field="unit_amount")
        if period_start and period_end and period_end < period_start:
            raise InvalidValue("a line's period ends before it starts", field="period_end")
        amount = charge(unit_amount, quantity)
        if self.subtotal + amount > MAX_AMOUNT:
            raise InvalidValue(f"the invoice's subtotal would pass {MAX_AMOUNT}", field="lines")
        self._add_line(
            description=description,
            quantity=quantity,
            unit_amount=unit_amount,
            amount=amount,
            period_start=period_start,
            period_end=period_end,
            occurred_at=occurred_at,
        )

    @event("LineAdded")
    def _add_line(
        self,
        description: str,
        quantity: int,
        unit_amount: int,
        amount: int,
        period_start: datetime | None,
        period_end: datetime | None,
        occurred_at: datetime,
    ) -> None:
        self.lines.append(
            {
                "description": description,
                "quantity": quantity,
                "unit_amount": unit_amount,
                "amount": amount,
                "period_start": period_start.isoformat() if period_start else None,
                "period_end": period_end.isoformat() if period_end else None,
            }
        )
        self.subtotal += amount

    def finalize(self, *, number: str, due_date: date, occurred_at: datetime) -> None:
        if self.status != DRAFT:
            raise InvoiceNotDraft(f"a {self.status} invoice cannot be finalized")
        if not self.lines:
            raise EmptyInvoice("an invoice without lines cannot be finalized")
        if due_date < occurred_at.date():
            raise InvalidValue("the due date is before the finalization date", field="due_date")
        discount = min(self.discount, self.subtotal)
        tax = compute_tax(self.subtotal - discount, self.tax_rate_bps)
        self._record_finalization(
            number=number,
            due_date=due_date,
            subtotal=self.subtotal,
            discount=discount,
            tax=tax,
            total=self.subtotal - discount + tax,
            occurred_at=occurred_at,
        )

    def finalize_external(
        self,
        *,
        number: str,
        due_date: date,
        subtotal: int,
        discount: int,
        tax: int,
        total: int,
        occurred_at: datetime,
    ) -> None:
        """Finalize with a number and amounts decided by a payment provider (Stripe): its
        figures are authoritative, so they are not recomputed, but they must add up."""
        if self.status != DRAFT:
            raise InvoiceNotDraft(f"a {self.status} invoice cannot be finalized")
        if not number.strip():
            raise InvalidValue("an invoice number cannot be blank", field="number")
        for name, amount in (("subtotal", subtotal), ("discount", discount), ("tax", tax), ("total", total)):
            check_amount(amount, name)
        if discount > subtotal:
            raise InvalidValue("the discount exceeds the subtotal", field="discount")
        if total != subtotal - discount + tax:
            raise InvalidValue("total is not subtotal - discount + tax", field="total")
        if due_date < occurred_at.date():
            raise InvalidValue("the due date is before the finalization date", field="due_date")
        self._record_finalization(
            number=number,
            due_date=due_date,
            subtotal=subtotal,
            discount=discount,
            tax=tax,
            total=total,
            occurred_at=occurred_at,
        )

    def _record_finalization(self, **figures: Any) -> None:
        """Finalized; an invoice with nothing to pay is paid at once, as Stripe does."""
        self._finalize(**figures)
        if self.total == 0:
            self._mark_paid(occurred_at=figures["occurred_at"])

    @event("Finalized")
    def _finalize(
        self,
        number: str,
        due_date: date,
        subtotal: int,
        discount: int,
        tax: int,
        total: int,
        occurred_at: datetime,
    ) -> None:
        self.status = OPEN
        self.number = number
        self.due_date = due_date
        self.subtotal = subtotal
        self.discount = discount
        self.tax = tax
        self.total = total
        self.amount_remaining = total
        self.finalized_at = occurred_at

    def check_payable(self, amount: int) -> None:
        if self.status != OPEN:
            raise InvoiceNotOpen(f"a {self.status} invoice cannot be paid")
        if amount > self.amount_remaining:
            raise Overpayment(
                f"{amount} exceeds the {self.amount_remaining} that remains on the invoice",
                field="amount",
            )

    def apply_payment(self, *, payment_id: UUID, amount: int, occurred_at: datetime) -> None:
        if amount <= 0:
            raise InvalidValue("a payment amount is positive", field="amount")
        self.check_payable(amount)
        self._apply_payment(payment_id=payment_id, amount=amount, occurred_at=occurred_at)
        if self.amount_remaining == 0:
            self._mark_paid(occurred_at=occurred_at)

    @event("PaymentApplied")
    def _apply_payment(self, payment_id: UUID, amount: int, occurred_at: datetime) -> None:
        self.amount_paid += amount
        self.amount_remaining -= amount

    @event("Paid")
    def _mark_paid(self, occurred_at: datetime) -> None:
        self.status = PAID

    def void(self, *, occurred_at: datetime) -> None:
        if self.status not in (DRAFT, OPEN):
            raise InvalidTransition(f"a {self.status} invoice cannot be voided")
        if self.amount_paid > 0:
            raise InvalidTransition("an invoice with payments applied cannot be voided; refund first")
        self._void(occurred_at=occurred_at)

    @event("Voided")
    def _void(self, occurred_at: datetime) -> None:
        self.status = VOID
        self.amount_remaining = 0

    def mark_uncollectible(self, *, occurred_at: datetime) -> None:
        if self.status != OPEN:
            raise InvoiceNotOpen(f"a {self.status} invoice cannot be marked uncollectible")
        self._mark_uncollectible(written_off=self.amount_remaining, occurred_at=occurred_at)

    @event("MarkedUncollectible")
    def _mark_uncollectible(self, written_off: int, occurred_at: datetime) -> None:
        self.status = UNCOLLECTIBLE
        self.amount_remaining = 0


@dataclass(frozen=True)
class InvoiceNumberAssigned(DomainEvent):
    """One event per number in a single sequence stream: its version IS the number, so two
    concurrent finalizations conflict on the version instead of sharing a number, no number is
    skipped, and taking the next one never needs the stream's history (O(1))."""

    invoice_id: UUID
    number: str
    occurred_at: datetime


def assign_invoice_number(
    *, last_sequence: int, prefix: str, invoice_id: UUID, occurred_at: datetime
) -> InvoiceNumberAssigned:
    sequence = last_sequence + 1
    return InvoiceNumberAssigned(
        originator_id=ids.INVOICE_NUMBERING_ID,
        originator_version=sequence,
        timestamp=datetime.now(UTC),
        invoice_id=invoice_id,
        number=f"{prefix}-{sequence:06d}",
        occurred_at=occurred_at,
    )
