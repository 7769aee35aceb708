"""The money pipeline of an invoice (SPEC 7), readable top to bottom:

    rate → prorate → discount → tax → balance → invoice figures

1. rate: each usage line's amount is its price model's exact result, rounded half-even once per
   line (`domain.rating.rate`);
2. prorate: a change part-way through a period credits the old terms and charges the new ones by
   the second, each line rounded half-even once (`domain.proration.proration`);
3. discount: a coupon applies to the subtotal of the lines, before tax; a percentage is rounded
   half-even once; an amount off never makes the subtotal negative (`discount_amount`);
4. tax: round_half_even((subtotal − discount) × rate), once per invoice; a customer `exempt` or
   under `reverse` charge pays none (`tax_amount`);
5. balance: at finalization the customer's credit balance pays what the invoice owes after tax
   (`balance_applied`); a negative total is owed to the customer and joins the balance;
6. figures: total = subtotal − discount + tax, and
   amount_remaining = total − paid − credited − balance applied (`InvoiceFigures`).

Credit notes (`split_credit_note`) lower what remains on an open invoice; beyond that, on what
was paid, they become a refund and/or customer credit. Pure functions; integer minor units in and
out; every division rounds half-even once, at the place named."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from domain.errors import CreditNoteExceedsInvoice, InvalidValue
from domain.money import divide_half_even

BPS = 10_000
TAX_EXEMPTIONS = ("none", "exempt", "reverse")
REVERSE_CHARGE_NOTE = "Reverse charge"


@dataclass(frozen=True)
class Discount:
    """A coupon as it applies to one invoice: a percentage off, or an amount off in the invoice's
    currency."""

    coupon: str
    percent_off: Decimal | None = None
    amount_off: int | None = None


def discount_amount(subtotal: int, discount: Discount | None) -> int:
    """What the coupon takes off the subtotal: never more than the subtotal, never below 0."""
    if discount is None or subtotal <= 0:
        return 0
    if discount.percent_off is not None:
        exact = Decimal(subtotal) * discount.percent_off / 100
        return min(subtotal, int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN)))
    return min(subtotal, discount.amount_off or 0)


def check_tax_exemption(tax_exempt: str) -> str:
    if tax_exempt not in TAX_EXEMPTIONS:
        raise InvalidValue("tax_exempt is none, exempt or reverse", field="tax_exempt")
    return tax_exempt


def tax_amount(taxable: int, tax_rate_bps: int, tax_exempt: str = "none") -> int:
    """round_half_even(taxable × rate), once per invoice; nothing for exempt and reverse charge."""
    if check_tax_exemption(tax_exempt) != "none":
        return 0
    return divide_half_even(taxable * tax_rate_bps, BPS)


def tax_note(tax_exempt: str) -> str | None:
    return REVERSE_CHARGE_NOTE if tax_exempt == "reverse" else None


@dataclass(frozen=True)
class InvoiceFigures:
    subtotal: int
    discount: int
    tax: int
    total: int

    @classmethod
    def of(
        cls,
        line_amounts: Iterable[int],
        *,
        discount: Discount | None = None,
        tax_rate_bps: int = 0,
        tax_exempt: str = "none",
    ) -> InvoiceFigures:
        """Lines → subtotal → discount → tax → total."""
        subtotal = sum(line_amounts)
        off = discount_amount(subtotal, discount)
        tax = tax_amount(subtotal - off, tax_rate_bps, tax_exempt)
        return cls(subtotal=subtotal, discount=off, tax=tax, total=subtotal - off + tax)


def balance_applied(total: int, balance: int) -> int:
    """How much of the customer's credit balance pays this invoice at finalization."""
    if total <= 0 or balance <= 0:
        return 0
    return min(total, balance)


def amount_remaining(*, total: int, paid: int, credited: int, balance_applied: int) -> int:
    return total - paid - credited - balance_applied


@dataclass(frozen=True)
class CreditNoteSplit:
    """Where a credit note's amount goes: off what remains to pay, refunded, or credited to the
    customer's balance."""

    against_remaining: int
    refund: int
    credit: int


def split_credit_note(
    *,
    amount: int,
    invoice_total: int,
    already_credited: int,
    amount_remaining: int,
    refund_amount: int | None = None,
    credit_amount: int | None = None,
) -> CreditNoteSplit:
    """A credit note first lowers what remains; the part beyond it (money already paid or
    covered by credit) is refunded and/or credited: refund + credit = that part, all credit
    when neither is given. Credit notes never exceed the invoice's total."""
    if amount <= 0:
        raise InvalidValue("a credit note's amount is positive", field="amount")
    if already_credited + amount > invoice_total:
        raise CreditNoteExceedsInvoice(
            f"credit notes would total {already_credited + amount}, more than the invoice's {invoice_total}",
            field="amount",
        )
    against = min(amount, max(amount_remaining, 0))
    beyond = amount - against
    for name, value in (("refund_amount", refund_amount), ("credit_amount", credit_amount)):
        if value is not None and value < 0:
            raise InvalidValue(f"{name} cannot be negative", field=name)
    if refund_amount is None and credit_amount is None:
        refund, credit = 0, beyond
    elif refund_amount is None:
        refund, credit = beyond - (credit_amount or 0), credit_amount or 0
    elif credit_amount is None:
        refund, credit = refund_amount, beyond - refund_amount
    else:
        refund, credit = refund_amount, credit_amount
    if refund < 0 or credit < 0 or refund + credit != beyond:
        raise InvalidValue(
            f"refund_amount + credit_amount must be {beyond}, the part beyond what remained to pay",
            field="refund_amount",
        )
    return CreditNoteSplit(against_remaining=against, refund=refund, credit=credit)
