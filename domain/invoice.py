from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import DomainEvent, event

from domain import ids
from domain.base import TimeDriven
from domain.billing import Discount, InvoiceFigures, balance_applied, check_tax_exemption, tax_note
from domain.coupon import as_discount
from domain.customer import check_tax_rate
from domain.dunning import (
    CHARGE_AUTOMATICALLY,
    EXHAUSTED,
    FINAL,
    REMINDING,
    RETRYING,
    SEND_INVOICE,
    STOPPED,
    DunningPolicy,
    Step,
    check_collection_method,
    next_step,
)
from domain.errors import (
    CreditNoteExceedsInvoice,
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


class Invoice(TimeDriven):
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

    @classmethod
    def generate(
        cls,
        *,
        invoice_id: UUID,
        customer_id: UUID,
        subscription_id: UUID,
        currency: str,
        tax_rate_bps: int,
        tax_exempt: str,
        coupon: dict[str, Any] | None,
        lines: Sequence[dict[str, Any]],
        period_start: datetime | None,
        period_end: datetime | None,
        finalize_at: datetime,
        billing_reason: str,
        occurred_at: datetime,
        usage_period: tuple[datetime, datetime] | None = None,
    ) -> Invoice:
        """A draft the ledger makes itself for a subscription, with its lines and every figure
        computed; it is finalized at `finalize_at` (after the grace period)."""
        check_currency(currency)
        check_tax_rate(tax_rate_bps)
        check_tax_exemption(tax_exempt)
        return cls._created_with_id(
            invoice_id,
            "Drafted",
            customer_id=customer_id,
            subscription_id=subscription_id,
            currency=currency,
            tax_rate_bps=tax_rate_bps,
            discount=0,
            occurred_at=occurred_at,
            period_start=period_start,
            period_end=period_end,
            tax_exempt=tax_exempt,
            coupon=coupon,
            lines=list(lines),
            finalize_at=finalize_at,
            billing_reason=billing_reason,
            figures=_figures(lines, coupon, 0, currency, tax_rate_bps, tax_exempt).__dict__,
            usage_period_start=usage_period[0] if usage_period else None,
            usage_period_end=usage_period[1] if usage_period else None,
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
        period_start: datetime | None = None,
        period_end: datetime | None = None,
        tax_exempt: str = "none",
        coupon: dict[str, Any] | None = None,
        lines: list[dict[str, Any]] | None = None,
        finalize_at: datetime | None = None,
        billing_reason: str = "manual",
        figures: dict[str, int] | None = None,
        usage_period_start: datetime | None = None,
        usage_period_end: datetime | None = None,
    ) -> None:
        self.customer_id = customer_id
        self.subscription_id = subscription_id
        self.currency = currency
        self.tax_rate_bps = tax_rate_bps
        self.tax_exempt = tax_exempt
        self.fixed_discount = discount  # a hand-made draft's amount off
        self.coupon = copy.deepcopy(coupon)
        self.lines: list[dict[str, Any]] = _copied(lines or [])
        self.period_start = period_start
        self.period_end = period_end
        self.finalize_at = finalize_at
        self.billing_reason = billing_reason
        # The period whose usage the invoice bills in arrears (re-rated until it is finalized).
        self.usage_period = (
            (usage_period_start, usage_period_end) if usage_period_start and usage_period_end else None
        )
        self.status = DRAFT
        self.number: str | None = None
        self.due_date: date | None = None
        self._set_figures(self.figures())
        self.amount_paid = 0
        self.payment_ids: list[UUID] = []
        self.amount_credited = 0
        self.credited_against_remaining = 0
        self.balance_applied = 0
        self.drafted_at = occurred_at
        self.finalized_at: datetime | None = None
        # How the money is collected (the customer's method at finalization; None: elsewhere,
        # e.g. an invoice Stripe finalized) and what is being done about it not coming in.
        self.collection_method: str | None = None
        self.payment_failures = 0
        self.dunning: dict[str, Any] | None = None

    # ------------------------------------------------------------------ figures

    def figures(self) -> InvoiceFigures:
        """Lines → subtotal → discount → tax → total (domain.billing), as the invoice stands."""
        return _figures(
            self.lines, self.coupon, self.fixed_discount, self.currency, self.tax_rate_bps, self.tax_exempt
        )

    def _set_figures(self, figures: InvoiceFigures) -> None:
        self.subtotal = figures.subtotal
        self.discount = figures.discount
        self.tax = figures.tax
        self.total = figures.total
        self.amount_remaining = max(figures.total, 0)

    @property
    def tax_note(self) -> str | None:
        return tax_note(self.tax_exempt)

    # ------------------------------------------------------------------ the clock of dunning

    @property
    def next_due_at(self) -> datetime | None:
        """When the next dunning step falls due (a generated draft's finalization is its
        subscription's to decide: `finalize_at`)."""
        step = self._next_step()
        return step.scheduled_at if step is not None else None

    def _next_step(self) -> Step | None:
        if self.dunning is None or self.status != OPEN:
            return None
        schedule = [datetime.fromisoformat(m) for m in self.dunning["schedule"]]
        return next_step(self.dunning["state"], schedule, len(self.dunning["steps"]))

    def advance(self, now: datetime) -> int:
        """Take each dunning step due by `now`, at the moment it fell due."""
        taken = 0
        while (step := self._next_step()) is not None and step.scheduled_at <= now:
            self._take_step(step)
            taken += 1
        return taken

    def _take_step(self, step: Step) -> None:
        dunning = self.dunning or {}
        following = None
        if step.action != FINAL:
            schedule = [datetime.fromisoformat(m) for m in dunning["schedule"]]
            after = next_step(dunning["state"], schedule, step.step)
            following = after.scheduled_at if after is not None else None
        self._step_taken(
            step=step.step,
            action=step.action,
            scheduled_at=step.scheduled_at,
            attempts=self.payment_failures,
            next_action_at=following,
            final_action=dunning.get("final_action", "none") if step.action == FINAL else None,
            occurred_at=step.scheduled_at,
        )

    @event("DunningStarted")
    def _start_dunning(
        self, state: str, schedule: list[str], final_action: str, occurred_at: datetime
    ) -> None:
        self.dunning = {
            "state": state,
            "schedule": list(schedule),  # ISO moments: a list of datetimes would not survive storage
            "steps": [],
            "final_action": final_action,
            "started_at": occurred_at.isoformat(),
        }

    @event("DunningStepTaken")
    def _step_taken(
        self,
        step: int,
        action: str,
        scheduled_at: datetime,
        attempts: int,
        next_action_at: datetime | None,
        final_action: str | None,
        occurred_at: datetime,
    ) -> None:
        dunning = self.dunning or {}
        self.dunning = {
            **dunning,
            "steps": [*dunning.get("steps", []), action],
            "state": EXHAUSTED if action == FINAL else dunning.get("state"),
        }

    def record_failed_payment(
        self, *, payment_id: UUID, occurred_at: datetime, policy: DunningPolicy | None
    ) -> None:
        """An attempt to collect this invoice failed. The first failure of an automatically
        collected invoice starts retrying; a failure once every retry was made exhausts it."""
        if self.status != OPEN:
            return  # paid (or settled otherwise) meanwhile: the failure changes nothing owed
        self._payment_failed(
            payment_id=payment_id, failures=self.payment_failures + 1, occurred_at=occurred_at
        )
        if self.collection_method != CHARGE_AUTOMATICALLY or policy is None:
            return
        if self.dunning is None:
            self._start_dunning(
                state=RETRYING,
                schedule=[m.isoformat() for m in policy.retries_after(occurred_at)],
                final_action=policy.final_action,
                occurred_at=occurred_at,
            )
        if self.dunning is not None and self.dunning["state"] == RETRYING and self._next_step() is None:
            taken = len(self.dunning["steps"])
            self._take_step(Step(taken + 1, FINAL, occurred_at))

    @event("PaymentFailed")
    def _payment_failed(self, payment_id: UUID, failures: int, occurred_at: datetime) -> None:
        self.payment_failures = failures

    def lines_of_kind(self, *kinds: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("kind", "manual") in kinds]

    def revise_lines(self, *, lines: Sequence[dict[str, Any]], occurred_at: datetime) -> bool:
        """Replace a draft's lines (late usage of its period arrived during the grace period);
        returns False, recording nothing, when nothing changes."""
        if self.status != DRAFT:
            raise InvoiceNotDraft("only a draft's lines can be revised")
        if list(lines) == self.lines:
            return False
        figures = _figures(
            lines, self.coupon, self.fixed_discount, self.currency, self.tax_rate_bps, self.tax_exempt
        )
        self._revise_lines(lines=list(lines), figures=figures.__dict__, occurred_at=occurred_at)
        return True

    @event("LinesRevised")
    def _revise_lines(
        self, lines: list[dict[str, Any]], figures: dict[str, int], occurred_at: datetime
    ) -> None:
        self.lines = _copied(lines)
        self._set_figures(InvoiceFigures(**figures))

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
        line_id = ids.invoice_line_id(self.id, len(self.lines))
        after = _figures(
            [*self.lines, {"amount": amount}],
            self.coupon,
            self.fixed_discount,
            self.currency,
            self.tax_rate_bps,
            self.tax_exempt,
        )
        self._add_line(
            description=description,
            quantity=quantity,
            unit_amount=unit_amount,
            amount=amount,
            period_start=period_start,
            period_end=period_end,
            occurred_at=occurred_at,
            line_id=line_id,
            figures=after.__dict__,
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
        line_id: UUID | None = None,
        figures: dict[str, int] | None = None,
    ) -> None:
        self.lines.append(
            {
                "line_id": str(line_id or ids.invoice_line_id(self.id, len(self.lines))),
                "kind": "manual",
                "description": description,
                "quantity": quantity,
                "unit_amount": unit_amount,
                "amount": amount,
                "period_start": period_start.isoformat() if period_start else None,
                "period_end": period_end.isoformat() if period_end else None,
            }
        )
        self._set_figures(self.figures())

    def finalize(
        self,
        *,
        number: str,
        due_date: date,
        occurred_at: datetime,
        balance_available: int = 0,
        collection_method: str = SEND_INVOICE,
        dunning: DunningPolicy | None = None,
    ) -> None:
        """Open the invoice under its number. The customer's credit balance (what is available of
        it in the invoice's currency) pays what the invoice owes after tax; a negative total is
        owed to the customer (the application credits it to the balance)."""
        if self.status != DRAFT:
            raise InvoiceNotDraft(f"a {self.status} invoice cannot be finalized")
        if not self.lines:
            raise EmptyInvoice("an invoice without lines cannot be finalized")
        if due_date < occurred_at.date():
            raise InvalidValue("the due date is before the finalization date", field="due_date")
        check_collection_method(collection_method)
        figures = self.figures()
        self._record_finalization(
            number=number,
            due_date=due_date,
            subtotal=figures.subtotal,
            discount=figures.discount,
            tax=figures.tax,
            total=figures.total,
            occurred_at=occurred_at,
            balance_applied=balance_applied(figures.total, balance_available),
            collection_method=collection_method,
        )
        if self.status == OPEN and collection_method == SEND_INVOICE and dunning is not None:
            reminders = dunning.reminders_for(due_date, not_before=occurred_at)
            if reminders:
                self._start_dunning(
                    state=REMINDING,
                    schedule=[m.isoformat() for m in reminders],
                    final_action=dunning.final_action,
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
        """Finalized; an invoice with nothing (left) to pay is paid at once, as Stripe does."""
        self._finalize(**figures)
        if self.amount_remaining == 0:
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
        balance_applied: int = 0,
        collection_method: str | None = None,
    ) -> None:
        self.status = OPEN
        self.collection_method = collection_method
        self.number = number
        self.due_date = due_date
        self.subtotal = subtotal
        self.discount = discount
        self.tax = tax
        self.total = total
        self.balance_applied = balance_applied
        self.amount_remaining = max(total, 0) - balance_applied
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
        self.payment_ids = [*self.payment_ids, payment_id]

    @event("Paid")
    def _mark_paid(self, occurred_at: datetime) -> None:
        self.status = PAID
        self._stop_dunning()

    def _stop_dunning(self) -> None:
        """Settled: dunning under way stops (an exhausted one stays as it ended)."""
        if self.dunning is not None and self.dunning["state"] in (RETRYING, REMINDING):
            self.dunning = {**self.dunning, "state": STOPPED}

    def credit(
        self,
        *,
        credit_note_id: UUID,
        amount: int,
        against_remaining: int,
        occurred_at: datetime,
        to_balance: int = 0,
    ) -> None:
        """A credit note on this invoice: `against_remaining` of it lowers what remains to pay,
        `to_balance` is credited to the customer's balance (the rest is refunded)."""
        if self.status not in (OPEN, PAID):
            raise InvoiceNotOpen(f"a {self.status} invoice cannot be credited")
        if self.amount_credited + amount > max(self.total, 0):
            raise CreditNoteExceedsInvoice(
                f"credit notes would total {self.amount_credited + amount},"
                f" more than the invoice's {self.total}",
                field="amount",
            )
        self._credit(
            credit_note_id=credit_note_id,
            amount=amount,
            against_remaining=against_remaining,
            occurred_at=occurred_at,
            to_balance=to_balance,
        )
        if self.status == OPEN and self.amount_remaining == 0:
            self._mark_paid(occurred_at=occurred_at)

    @event("Credited")
    def _credit(
        self,
        credit_note_id: UUID,
        amount: int,
        against_remaining: int,
        occurred_at: datetime,
        to_balance: int = 0,
    ) -> None:
        self.amount_credited += amount
        self.credited_against_remaining += against_remaining
        self.amount_remaining -= against_remaining

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
        self._stop_dunning()

    def mark_uncollectible(self, *, occurred_at: datetime) -> None:
        if self.status != OPEN:
            raise InvoiceNotOpen(f"a {self.status} invoice cannot be marked uncollectible")
        self._mark_uncollectible(written_off=self.amount_remaining, occurred_at=occurred_at)

    @event("MarkedUncollectible")
    def _mark_uncollectible(self, written_off: int, occurred_at: datetime) -> None:
        self.status = UNCOLLECTIBLE
        self.amount_remaining = 0
        self._stop_dunning()


def _copied(lines: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The lines, never sharing a dict with the recorded event (lines hold one nested dict, their
    source; a deep copy of every invoice's lines costs more than the rest of drafting it)."""
    return [{**line, "source": dict(line["source"])} if "source" in line else dict(line) for line in lines]


def _figures(
    lines: Sequence[dict[str, Any]],
    coupon: dict[str, Any] | None,
    fixed_discount: int,
    currency: str,
    tax_rate_bps: int,
    tax_exempt: str,
) -> InvoiceFigures:
    discount: Discount | None = as_discount(coupon, currency)
    if discount is None and fixed_discount:
        discount = Discount("amount_off", amount_off=fixed_discount)
    return InvoiceFigures.of(
        (int(line["amount"]) for line in lines),
        discount=discount,
        tax_rate_bps=tax_rate_bps,
        tax_exempt=tax_exempt,
    )


@dataclass(frozen=True)
class InvoiceNumberAssigned(DomainEvent):
    """One event per number in a single sequence stream: its version IS the number, so two
    concurrent finalizations conflict on the version instead of sharing a number, no number is
    skipped, and taking the next one never needs the stream's history (O(1))."""

    invoice_id: UUID
    number: str
    occurred_at: datetime


def invoice_number(prefix: str, sequence: int) -> str:
    return f"{prefix}-{sequence:06d}"


def assign_invoice_number(
    *, last_sequence: int, prefix: str, invoice_id: UUID, occurred_at: datetime
) -> InvoiceNumberAssigned:
    sequence = last_sequence + 1
    return InvoiceNumberAssigned(
        originator_id=ids.INVOICE_NUMBERING_ID,
        originator_version=sequence,
        timestamp=datetime.now(UTC),
        invoice_id=invoice_id,
        number=invoice_number(prefix, sequence),
        occurred_at=occurred_at,
    )
