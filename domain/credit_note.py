"""Credit notes (SPEC 7, "Credit notes"): a document that corrects an invoice, numbered gaplessly
in a sequence of its own (CN-000001). On an open invoice it lowers what remains to pay; beyond
that, on what was paid, it becomes a refund and/or credit on the customer's balance."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import DomainEvent, event

from domain import ids
from domain.base import LedgerAggregate
from domain.billing import CreditNoteSplit
from domain.errors import InvalidValue

REASONS = ("duplicate", "fraudulent", "order_change", "product_unsatisfactory", "other")
CREDIT_NOTE_PREFIX = "CN"


def check_reason(reason: str) -> str:
    if reason not in REASONS:
        raise InvalidValue(f"reason is one of {', '.join(REASONS)}", field="reason")
    return reason


def credit_note_amount(
    amount: int | None, lines: list[dict[str, Any]] | None, invoice_lines: list[dict[str, Any]]
) -> int:
    """The amount a credit note takes off: given, or the sum of the invoice lines it names (each
    at most that line's amount)."""
    if (amount is None) == (lines is None):
        raise InvalidValue("a credit note has either an amount or lines", field="amount")
    if amount is not None:
        return amount
    by_id = {str(line.get("line_id")): line for line in invoice_lines}
    total = 0
    for index, item in enumerate(lines or []):
        line = by_id.get(str(item.get("line_id")))
        if line is None:
            raise InvalidValue(
                f"the invoice has no line {item.get('line_id')}", field=f"lines.{index}.line_id"
            )
        value = item.get("amount")
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not 0 < value <= max(int(line["amount"]), 0)
        ):
            raise InvalidValue(
                "a line's credit is positive and at most the line's amount", field=f"lines.{index}.amount"
            )
        total += value
    return total


class CreditNote(LedgerAggregate):
    @classmethod
    def issue(
        cls,
        *,
        invoice_id: UUID,
        customer_id: UUID,
        currency: str,
        number: str,
        reason: str,
        amount: int,
        lines: list[dict[str, Any]],
        split: CreditNoteSplit,
        memo: str | None,
        occurred_at: datetime,
    ) -> CreditNote:
        check_reason(reason)
        return cls._created_with_id(
            ids.credit_note_id(number),
            "Issued",
            invoice_id=invoice_id,
            customer_id=customer_id,
            currency=currency,
            number=number,
            reason=reason,
            amount=amount,
            lines=lines,
            against_remaining=split.against_remaining,
            refund_amount=split.refund,
            credit_amount=split.credit,
            memo=memo,
            occurred_at=occurred_at,
        )

    @event("Issued")
    def __init__(
        self,
        invoice_id: UUID,
        customer_id: UUID,
        currency: str,
        number: str,
        reason: str,
        amount: int,
        lines: list[dict[str, Any]],
        against_remaining: int,
        refund_amount: int,
        credit_amount: int,
        memo: str | None,
        occurred_at: datetime,
    ) -> None:
        self.invoice_id = invoice_id
        self.customer_id = customer_id
        self.currency = currency
        self.number = number
        self.reason = reason
        self.amount = amount
        self.lines = copy.deepcopy(lines)
        self.against_remaining = against_remaining
        self.refund_amount = refund_amount
        self.credit_amount = credit_amount
        self.memo = memo
        self.issued_at = occurred_at


@dataclass(frozen=True)
class CreditNoteNumberAssigned(DomainEvent):
    """One event per number in the credit notes' own sequence stream: its version is the number
    (as for invoices: concurrent issues conflict instead of sharing or skipping a number)."""

    credit_note_id: UUID
    number: str
    occurred_at: datetime


def assign_credit_note_number(
    *, last_sequence: int, credit_note_id: UUID, occurred_at: datetime
) -> CreditNoteNumberAssigned:
    sequence = last_sequence + 1
    return CreditNoteNumberAssigned(
        originator_id=ids.CREDIT_NOTE_NUMBERING_ID,
        originator_version=sequence,
        timestamp=datetime.now(UTC),
        credit_note_id=credit_note_id,
        number=credit_note_number(sequence),
        occurred_at=occurred_at,
    )


def credit_note_number(sequence: int) -> str:
    return f"{CREDIT_NOTE_PREFIX}-{sequence:06d}"
