from __future__ import annotations

from datetime import date, datetime
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import ids
from domain.errors import (
    EmptyInvoice,
    InvalidTransition,
    InvalidValue,
    InvoiceNotDraft,
    InvoiceNotOpen,
    Overpayment,
)
from domain.invoice import (
    DRAFT,
    OPEN,
    PAID,
    UNCOLLECTIBLE,
    VOID,
    Invoice,
    assign_invoice_number,
    compute_tax,
)
from tests.unit.factories import (
    T0,
    add_line,
    assert_rebuilds_identically,
    assert_refused,
    at,
    draft_invoice,
    event_names,
    open_invoice,
)

DUE = at(2025, 2, 14).date()
PAY_DAY = at(2025, 2, 10)


def finalize(invoice: Invoice, *, due_date: date = DUE, occurred_at: datetime = T0) -> None:
    invoice.finalize(number="INV-000007", due_date=due_date, occurred_at=occurred_at)


def pay(invoice: Invoice, amount: int) -> None:
    invoice.apply_payment(payment_id=uuid4(), amount=amount, occurred_at=PAY_DAY)


def paid_invoice() -> Invoice:
    invoice = open_invoice(unit_amount=1000)
    pay(invoice, 1000)
    return invoice


def void_invoice() -> Invoice:
    invoice = open_invoice()
    invoice.void(occurred_at=PAY_DAY)
    return invoice


def uncollectible_invoice() -> Invoice:
    invoice = open_invoice()
    invoice.mark_uncollectible(occurred_at=PAY_DAY)
    return invoice


def draft_with_a_line() -> Invoice:
    invoice = draft_invoice()
    add_line(invoice)
    return invoice


# ---------------------------------------------------------------- draft


def test_drafting_an_invoice_records_drafted_with_nothing_owed_yet() -> None:
    customer_id, subscription_id = uuid4(), uuid4()
    invoice = draft_invoice(
        customer_id=customer_id, subscription_id=subscription_id, tax_rate_bps=2000, discount=300
    )
    assert event_names(invoice) == ["Drafted"]
    assert invoice.status == DRAFT
    assert invoice.customer_id == invoice.owner_customer_id == customer_id
    assert invoice.subscription_id == subscription_id
    assert (invoice.currency, invoice.tax_rate_bps, invoice.fixed_discount) == ("EUR", 2000, 300)
    assert invoice.lines == []
    assert (invoice.subtotal, invoice.tax, invoice.total) == (0, 0, 0)
    assert (invoice.amount_paid, invoice.amount_remaining) == (0, 0)
    assert invoice.number is None
    assert invoice.due_date is None
    assert invoice.drafted_at == T0
    assert invoice.finalized_at is None


def test_drafting_in_an_unknown_currency_is_refused() -> None:
    with pytest.raises(InvalidValue) as caught:
        draft_invoice(currency="EUROS")
    assert caught.value.field == "currency"


def test_a_negative_discount_is_refused() -> None:
    with pytest.raises(InvalidValue) as caught:
        draft_invoice(discount=-1)
    assert caught.value.field == "discount"


@pytest.mark.parametrize("tax_rate_bps", [-1, 10_001])
def test_a_tax_rate_outside_0_to_100_percent_is_refused_on_an_invoice(tax_rate_bps: int) -> None:
    with pytest.raises(InvalidValue) as caught:
        draft_invoice(tax_rate_bps=tax_rate_bps)
    assert caught.value.field == "tax_rate_bps"


# ---------------------------------------------------------------- lines


def test_adding_a_line_records_line_added_and_grows_the_subtotal() -> None:
    invoice = draft_invoice()
    invoice.collect_events()
    add_line(
        invoice,
        quantity=3,
        unit_amount=2900,
        period_start=at(2025, 1, 31),
        period_end=at(2025, 2, 28),
    )
    add_line(invoice, description="Setup fee", quantity=1, unit_amount=0)
    assert event_names(invoice) == ["LineAdded", "LineAdded"]
    assert invoice.subtotal == 8700
    assert [line.pop("line_id") for line in invoice.lines] == [
        str(ids.invoice_line_id(invoice.id, 0)),
        str(ids.invoice_line_id(invoice.id, 1)),
    ]
    assert [line.pop("kind") for line in invoice.lines] == ["manual", "manual"]
    assert invoice.lines == [
        {
            "description": "Pro plan",
            "quantity": 3,
            "unit_amount": 2900,
            "amount": 8700,
            "period_start": "2025-01-31T00:00:00+00:00",
            "period_end": "2025-02-28T00:00:00+00:00",
        },
        {
            "description": "Setup fee",
            "quantity": 1,
            "unit_amount": 0,
            "amount": 0,
            "period_start": None,
            "period_end": None,
        },
    ]


def test_a_line_over_a_single_instant_is_accepted() -> None:
    invoice = draft_invoice()
    add_line(invoice, period_start=T0, period_end=T0)
    assert len(invoice.lines) == 1


@pytest.mark.parametrize("quantity", [0, -1])
def test_a_line_quantity_below_one_is_refused(quantity: int) -> None:
    invoice = draft_invoice()
    error = assert_refused(invoice, InvalidValue, lambda: add_line(invoice, quantity=quantity))
    assert error.field == "quantity"


def test_a_negative_unit_amount_is_refused() -> None:
    invoice = draft_invoice()
    error = assert_refused(invoice, InvalidValue, lambda: add_line(invoice, unit_amount=-1))
    assert error.field == "unit_amount"


def test_a_line_period_ending_before_it_starts_is_refused() -> None:
    invoice = draft_invoice()
    error = assert_refused(
        invoice,
        InvalidValue,
        lambda: add_line(invoice, period_start=at(2025, 2, 28), period_end=at(2025, 1, 31)),
    )
    assert error.field == "period_end"


@pytest.mark.parametrize("make", [open_invoice, paid_invoice, void_invoice, uncollectible_invoice])
def test_adding_a_line_to_an_invoice_that_is_not_a_draft_is_refused(make: object) -> None:
    invoice = make()  # type: ignore[operator]
    assert_refused(invoice, InvoiceNotDraft, lambda: add_line(invoice))


# ---------------------------------------------------------------- finalize


def test_finalizing_fixes_the_number_due_date_and_totals() -> None:
    invoice = draft_invoice(tax_rate_bps=2000, discount=500)
    add_line(invoice, quantity=2, unit_amount=2900)
    invoice.collect_events()
    finalize(invoice)
    (finalized,) = invoice.collect_events()
    assert type(finalized).__name__ == "Finalized"
    assert invoice.status == OPEN
    assert invoice.number == "INV-000007"
    assert invoice.due_date == DUE
    assert invoice.finalized_at == T0
    assert invoice.subtotal == 5800
    assert invoice.discount == 500
    assert invoice.tax == 1060  # 20% of 5300
    assert invoice.total == 6360
    assert (invoice.amount_paid, invoice.amount_remaining) == (0, 6360)


def test_tax_is_computed_once_on_the_discounted_subtotal_rounded_half_even() -> None:
    # 7% of 1250 = 87.5 -> 88; 7% of 1150 = 80.5 -> 80 (ties go to even)
    assert compute_tax(1250, 700) == 88
    assert compute_tax(1150, 700) == 80
    invoice = draft_invoice(tax_rate_bps=700)
    add_line(invoice, quantity=1, unit_amount=575)
    add_line(invoice, quantity=1, unit_amount=575)
    finalize(invoice)
    assert invoice.tax == 80
    assert invoice.total == 1230


def test_tax_rounds_once_per_invoice_not_per_line() -> None:
    invoice = draft_invoice(tax_rate_bps=1000)
    for _ in range(3):
        add_line(invoice, unit_amount=5)  # 10% of 5 = 0.5 -> 0 per line, but 1.5 -> 2 in total
    finalize(invoice)
    assert invoice.tax == 2
    assert invoice.total == 17


def test_a_discount_larger_than_the_subtotal_is_capped_at_the_subtotal() -> None:
    invoice = draft_invoice(tax_rate_bps=2000, discount=5000)
    add_line(invoice, unit_amount=1000)
    finalize(invoice)
    assert (invoice.discount, invoice.tax, invoice.total) == (1000, 0, 0)


def test_finalizing_an_invoice_with_nothing_to_pay_marks_it_paid() -> None:
    invoice = draft_invoice()
    add_line(invoice, unit_amount=0)
    invoice.collect_events()
    finalize(invoice)
    assert event_names(invoice) == ["Finalized", "Paid"]
    assert invoice.status == PAID
    assert invoice.amount_remaining == 0


def test_a_due_date_on_the_finalization_day_is_accepted() -> None:
    invoice = draft_with_a_line()
    finalize(invoice, due_date=T0.date())
    assert invoice.status == OPEN


def test_finalizing_an_empty_invoice_is_refused() -> None:
    invoice = draft_invoice()
    error = assert_refused(invoice, EmptyInvoice, lambda: finalize(invoice))
    assert error.code == "empty_invoice"


def test_a_due_date_before_the_finalization_date_is_refused() -> None:
    invoice = draft_with_a_line()
    error = assert_refused(invoice, InvalidValue, lambda: finalize(invoice, due_date=at(2025, 1, 30).date()))
    assert error.field == "due_date"


@pytest.mark.parametrize("make", [open_invoice, paid_invoice, void_invoice, uncollectible_invoice])
def test_finalizing_an_invoice_that_is_not_a_draft_is_refused(make: object) -> None:
    invoice = make()  # type: ignore[operator]
    assert_refused(invoice, InvoiceNotDraft, lambda: finalize(invoice))


# ---------------------------------------------------------------- payments


def test_a_partial_payment_reduces_what_remains_and_keeps_the_invoice_open() -> None:
    invoice = open_invoice(unit_amount=1000)
    invoice.collect_events()
    payment_id = uuid4()
    invoice.apply_payment(payment_id=payment_id, amount=400, occurred_at=PAY_DAY)
    (applied,) = invoice.collect_events()
    assert type(applied).__name__ == "PaymentApplied"
    assert applied.payment_id == payment_id  # type: ignore[attr-defined]
    assert applied.amount == 400  # type: ignore[attr-defined]
    assert invoice.status == OPEN
    assert (invoice.amount_paid, invoice.amount_remaining) == (400, 600)


def test_paying_what_remains_marks_the_invoice_paid() -> None:
    invoice = open_invoice(unit_amount=1000)
    pay(invoice, 400)
    invoice.collect_events()
    pay(invoice, 600)
    assert event_names(invoice) == ["PaymentApplied", "Paid"]
    assert invoice.status == PAID
    assert (invoice.amount_paid, invoice.amount_remaining) == (1000, 0)


def test_paying_a_void_invoice_is_refused() -> None:
    invoice = void_invoice()
    error = assert_refused(invoice, InvoiceNotOpen, lambda: pay(invoice, 100))
    assert error.code == "invoice_not_open"


@pytest.mark.parametrize("make", [draft_with_a_line, paid_invoice, uncollectible_invoice])
def test_paying_an_invoice_that_is_not_open_is_refused(make: object) -> None:
    invoice = make()  # type: ignore[operator]
    assert_refused(invoice, InvoiceNotOpen, lambda: pay(invoice, 1))


def test_paying_more_than_remains_is_refused() -> None:
    invoice = open_invoice(unit_amount=1000)
    pay(invoice, 600)
    error = assert_refused(invoice, Overpayment, lambda: pay(invoice, 401))
    assert error.field == "amount"
    assert invoice.amount_remaining == 400


@pytest.mark.parametrize("amount", [0, -100])
def test_a_payment_amount_that_is_not_positive_is_refused(amount: int) -> None:
    invoice = open_invoice()
    error = assert_refused(invoice, InvalidValue, lambda: pay(invoice, amount))
    assert error.field == "amount"


def test_check_payable_accepts_up_to_what_remains() -> None:
    invoice = open_invoice(unit_amount=1000)
    invoice.collect_events()
    invoice.check_payable(1000)
    with pytest.raises(Overpayment):
        invoice.check_payable(1001)
    assert invoice.collect_events() == []
    assert invoice.amount_remaining == 1000


@settings(deadline=None)
@given(
    st.integers(min_value=1, max_value=10**7),
    st.integers(min_value=0, max_value=10_000),
    st.lists(st.integers(min_value=1, max_value=10**6), min_size=1, max_size=8),
)
def test_payments_never_make_paid_plus_remaining_differ_from_the_total(
    unit_amount: int, tax_rate_bps: int, payments: list[int]
) -> None:
    invoice = open_invoice(unit_amount=unit_amount, tax_rate_bps=tax_rate_bps)
    total = invoice.total
    assert total == unit_amount + compute_tax(unit_amount, tax_rate_bps)
    for amount in payments:
        if invoice.status != OPEN:
            break
        if amount > invoice.amount_remaining:
            with pytest.raises(Overpayment):
                pay(invoice, amount)
        else:
            pay(invoice, amount)
        assert invoice.amount_paid + invoice.amount_remaining == total
        assert invoice.amount_remaining >= 0
        assert (invoice.status == PAID) == (invoice.amount_remaining == 0)


# ---------------------------------------------------------------- void / uncollectible


@pytest.mark.parametrize("make", [draft_with_a_line, open_invoice])
def test_voiding_a_draft_or_open_invoice_leaves_nothing_owed(make: object) -> None:
    invoice = make()  # type: ignore[operator]
    invoice.collect_events()
    invoice.void(occurred_at=PAY_DAY)
    assert event_names(invoice) == ["Voided"]
    assert invoice.status == VOID
    assert invoice.amount_remaining == 0


@pytest.mark.parametrize("make", [paid_invoice, void_invoice, uncollectible_invoice])
def test_voiding_a_paid_void_or_uncollectible_invoice_is_refused(make: object) -> None:
    invoice = make()  # type: ignore[operator]
    assert_refused(invoice, InvalidTransition, lambda: invoice.void(occurred_at=PAY_DAY))


def test_voiding_a_partly_paid_invoice_is_refused() -> None:
    invoice = open_invoice(unit_amount=1000)
    pay(invoice, 1)
    error = assert_refused(invoice, InvalidTransition, lambda: invoice.void(occurred_at=PAY_DAY))
    assert "refund" in error.message


def test_marking_an_open_invoice_uncollectible_writes_off_what_remains() -> None:
    invoice = open_invoice(unit_amount=1000)
    pay(invoice, 250)
    invoice.collect_events()
    invoice.mark_uncollectible(occurred_at=PAY_DAY)
    (written_off,) = invoice.collect_events()
    assert type(written_off).__name__ == "MarkedUncollectible"
    assert written_off.written_off == 750  # type: ignore[attr-defined]
    assert invoice.status == UNCOLLECTIBLE
    assert (invoice.amount_paid, invoice.amount_remaining) == (250, 0)


@pytest.mark.parametrize("make", [draft_with_a_line, paid_invoice, void_invoice, uncollectible_invoice])
def test_marking_an_invoice_that_is_not_open_uncollectible_is_refused(make: object) -> None:
    invoice = make()  # type: ignore[operator]
    assert_refused(invoice, InvoiceNotOpen, lambda: invoice.mark_uncollectible(occurred_at=PAY_DAY))


# ---------------------------------------------------------------- numbering


def test_invoice_numbers_are_sequential_and_the_version_is_the_number() -> None:
    invoice_id = uuid4()
    first = assign_invoice_number(last_sequence=0, prefix="INV", invoice_id=invoice_id, occurred_at=T0)
    assert first.originator_id == ids.INVOICE_NUMBERING_ID
    assert first.originator_version == 1
    assert first.number == "INV-000001"
    assert first.invoice_id == invoice_id
    assert first.occurred_at == T0
    next_one = assign_invoice_number(last_sequence=41, prefix="ACME", invoice_id=uuid4(), occurred_at=T0)
    assert (next_one.originator_version, next_one.number) == (42, "ACME-000042")


# ---------------------------------------------------------------- history


def test_an_invoice_rebuilt_from_its_events_has_the_same_state() -> None:
    invoice = draft_invoice(tax_rate_bps=2000, discount=100)
    add_line(invoice, quantity=2, unit_amount=1000, period_start=T0, period_end=at(2025, 2, 28))
    finalize(invoice)
    pay(invoice, 1000)
    pay(invoice, invoice.amount_remaining)
    copy = assert_rebuilds_identically(invoice)
    assert copy.status == PAID
    assert copy.total == 2280


def test_a_written_off_invoice_rebuilt_from_its_events_has_the_same_state() -> None:
    invoice = open_invoice()
    invoice.mark_uncollectible(occurred_at=PAY_DAY)
    assert assert_rebuilds_identically(invoice).status == UNCOLLECTIBLE


def test_a_voided_invoice_rebuilt_from_its_events_has_the_same_state() -> None:
    invoice = draft_with_a_line()
    invoice.void(occurred_at=PAY_DAY)
    assert assert_rebuilds_identically(invoice).status == VOID
