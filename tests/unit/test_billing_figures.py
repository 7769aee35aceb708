"""The money pipeline of an invoice (SPEC 7): discount, tax, balance, credit notes, with worked
examples and the identities every invoice must satisfy."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.billing import (
    Discount,
    InvoiceFigures,
    amount_remaining,
    balance_applied,
    split_credit_note,
    tax_note,
)
from domain.errors import CreditNoteExceedsInvoice, InvalidValue


def test_a_20_percent_coupon_and_20_percent_vat_on_1999() -> None:
    figures = InvoiceFigures.of(
        [1999], discount=Discount("SAVE20", percent_off=Decimal(20)), tax_rate_bps=2000
    )
    # 1999 × 20% = 399.8 → 400 off; (1999 − 400) × 20% = 319.8 → 320 tax.
    assert figures == InvoiceFigures(subtotal=1999, discount=400, tax=320, total=1919)


def test_an_amount_off_never_makes_the_subtotal_negative() -> None:
    figures = InvoiceFigures.of([300, -100], discount=Discount("BIG", amount_off=500), tax_rate_bps=2000)
    assert figures == InvoiceFigures(subtotal=200, discount=200, tax=0, total=0)


def test_exempt_and_reverse_charge_customers_pay_no_tax_and_reverse_charge_says_so() -> None:
    for exemption in ("exempt", "reverse"):
        assert InvoiceFigures.of([10_000], tax_rate_bps=2000, tax_exempt=exemption).tax == 0
    assert tax_note("reverse") == "Reverse charge"
    assert tax_note("exempt") is None
    with pytest.raises(InvalidValue):
        InvoiceFigures.of([1], tax_exempt="sometimes")


def test_tax_is_rounded_half_even_once_on_the_discounted_subtotal() -> None:
    # 25 × 10% = 2.5 → 2; 35 × 10% = 3.5 → 4.
    assert InvoiceFigures.of([25], tax_rate_bps=1000).tax == 2
    assert InvoiceFigures.of([35], tax_rate_bps=1000).tax == 4


def test_a_credit_balance_pays_what_the_invoice_owes_after_tax() -> None:
    assert balance_applied(1200, 500) == 500
    assert balance_applied(1200, 5000) == 1200
    assert balance_applied(-300, 5000) == 0
    assert amount_remaining(total=1200, paid=0, credited=0, balance_applied=500) == 700


def test_a_credit_note_lowers_what_remains_then_refunds_or_credits_the_rest() -> None:
    open_note = split_credit_note(amount=300, invoice_total=1000, already_credited=0, amount_remaining=1000)
    assert (open_note.against_remaining, open_note.refund, open_note.credit) == (300, 0, 0)
    # On a paid invoice everything is beyond what remained: all credit unless told otherwise.
    paid = split_credit_note(amount=400, invoice_total=1000, already_credited=0, amount_remaining=0)
    assert (paid.against_remaining, paid.refund, paid.credit) == (0, 0, 400)
    refunded = split_credit_note(
        amount=400, invoice_total=1000, already_credited=0, amount_remaining=100, refund_amount=250
    )
    assert (refunded.against_remaining, refunded.refund, refunded.credit) == (100, 250, 50)


def test_credit_notes_never_exceed_the_invoice_total() -> None:
    with pytest.raises(CreditNoteExceedsInvoice):
        split_credit_note(amount=600, invoice_total=1000, already_credited=500, amount_remaining=0)


def test_a_refund_and_credit_that_do_not_add_up_are_refused() -> None:
    with pytest.raises(InvalidValue):
        split_credit_note(
            amount=400,
            invoice_total=1000,
            already_credited=0,
            amount_remaining=0,
            refund_amount=100,
            credit_amount=100,
        )


@settings(max_examples=500)
@given(
    st.lists(st.integers(-(10**9), 10**9), min_size=1, max_size=20),
    st.one_of(
        st.none(),
        st.decimals(min_value=0, max_value=100, places=2, allow_nan=False).map(
            lambda p: Discount("P", percent_off=p)
        ),
        st.integers(0, 10**10).map(lambda a: Discount("A", amount_off=a)),
    ),
    st.integers(0, 10_000),
    st.sampled_from(["none", "exempt", "reverse"]),
    st.integers(0, 10**10),
    st.integers(0, 10**10),
)
def test_every_invoice_satisfies_its_identities(
    lines: list[int], discount: Discount | None, rate: int, exemption: str, balance: int, paid_share: int
) -> None:
    figures = InvoiceFigures.of(lines, discount=discount, tax_rate_bps=rate, tax_exempt=exemption)
    assert figures.subtotal == sum(lines)
    assert figures.total == figures.subtotal - figures.discount + figures.tax
    assert 0 <= figures.discount <= max(figures.subtotal, 0)
    applied = balance_applied(figures.total, balance)
    paid = min(paid_share, max(figures.total - applied, 0))
    remaining = amount_remaining(total=figures.total, paid=paid, credited=0, balance_applied=applied)
    assert remaining == figures.total - paid - 0 - applied
    if figures.total >= 0:
        assert remaining >= 0
