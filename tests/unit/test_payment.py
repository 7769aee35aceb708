from __future__ import annotations

from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import InvalidTransition, InvalidValue, PaymentNotPending, RefundExceedsPayment
from domain.payment import FAILED, PENDING, REFUNDED, SUCCEEDED, Payment
from tests.unit.factories import (
    T0,
    assert_rebuilds_identically,
    assert_refused,
    at,
    event_names,
    initiate_payment,
)

LATER = at(2025, 2, 1)


def fail(payment: Payment) -> None:
    payment.fail(failure_code="card_declined", failure_message="Your card was declined.", occurred_at=LATER)


def succeeded_payment(amount: int = 1000) -> Payment:
    payment = initiate_payment(amount)
    payment.succeed(occurred_at=LATER)
    return payment


def failed_payment() -> Payment:
    payment = initiate_payment()
    fail(payment)
    return payment


def refunded_payment() -> Payment:
    payment = succeeded_payment(1000)
    payment.refund(amount=1000, occurred_at=LATER)
    return payment


# ---------------------------------------------------------------- initiate


def test_initiating_a_payment_records_initiated_as_pending_first_attempt() -> None:
    customer_id, invoice_id = uuid4(), uuid4()
    payment = initiate_payment(1500, customer_id=customer_id, invoice_id=invoice_id)
    assert event_names(payment) == ["Initiated"]
    assert payment.status == PENDING
    assert payment.customer_id == payment.owner_customer_id == customer_id
    assert payment.invoice_id == invoice_id
    assert (payment.amount, payment.currency) == (1500, "EUR")
    assert payment.provider_reference == "pi_123"
    assert payment.attempt == 1
    assert payment.amount_refunded == 0
    assert payment.failure_code is None
    assert payment.initiated_at == T0


def test_a_payment_need_not_name_an_invoice() -> None:
    assert initiate_payment(invoice_id=None, provider_reference=None).invoice_id is None


def test_a_payment_made_without_an_invoice_is_attached_to_it_once_the_provider_names_it() -> None:
    invoice_id = uuid4()
    payment = initiate_payment(invoice_id=None)
    payment.succeed(occurred_at=LATER)
    payment.attach_to_invoice(invoice_id=invoice_id, occurred_at=LATER)
    assert [type(e).__name__ for e in payment.pending_events] == [
        "Initiated",
        "Succeeded",
        "AttachedToInvoice",
    ]
    assert (payment.invoice_id, payment.status) == (invoice_id, SUCCEEDED)
    assert assert_rebuilds_identically(payment).invoice_id == invoice_id
    with pytest.raises(InvalidTransition):
        payment.attach_to_invoice(invoice_id=uuid4(), occurred_at=LATER)


@pytest.mark.parametrize("amount", [0, -1])
def test_a_payment_amount_that_is_not_positive_is_refused(amount: int) -> None:
    with pytest.raises(InvalidValue) as caught:
        initiate_payment(amount)
    assert caught.value.field == "amount"


def test_a_payment_in_an_unknown_currency_is_refused() -> None:
    with pytest.raises(InvalidValue) as caught:
        initiate_payment(currency="DOGE")
    assert caught.value.field == "currency"


# ---------------------------------------------------------------- outcome


def test_a_pending_payment_succeeds() -> None:
    payment = initiate_payment()
    payment.collect_events()
    payment.succeed(occurred_at=LATER)
    assert event_names(payment) == ["Succeeded"]
    assert payment.status == SUCCEEDED


def test_a_pending_payment_fails_with_the_provider_reason() -> None:
    payment = initiate_payment()
    payment.collect_events()
    fail(payment)
    assert event_names(payment) == ["Failed"]
    assert payment.status == FAILED
    assert payment.failure_code == "card_declined"
    assert payment.failure_message == "Your card was declined."


@pytest.mark.parametrize("make", [succeeded_payment, failed_payment, refunded_payment])
def test_recording_success_for_a_payment_that_is_not_pending_is_refused(make: object) -> None:
    payment = make()  # type: ignore[operator]
    error = assert_refused(payment, PaymentNotPending, lambda: payment.succeed(occurred_at=LATER))
    assert error.code == "payment_not_pending"


@pytest.mark.parametrize("make", [succeeded_payment, failed_payment, refunded_payment])
def test_recording_failure_for_a_payment_that_is_not_pending_is_refused(make: object) -> None:
    payment = make()  # type: ignore[operator]
    assert_refused(payment, PaymentNotPending, lambda: fail(payment))


# ---------------------------------------------------------------- retry


def test_retrying_a_failed_payment_makes_it_pending_again_as_the_next_attempt() -> None:
    payment = failed_payment()
    payment.collect_events()
    payment.retry(occurred_at=at(2025, 2, 3))
    assert event_names(payment) == ["Retried"]
    assert payment.status == PENDING
    assert payment.attempt == 2


def test_a_retried_payment_that_succeeds_forgets_its_failure() -> None:
    payment = failed_payment()
    payment.retry(occurred_at=at(2025, 2, 3))
    fail(payment)
    payment.retry(occurred_at=at(2025, 2, 5))
    assert payment.attempt == 3
    payment.succeed(occurred_at=at(2025, 2, 5))
    assert payment.status == SUCCEEDED
    assert payment.failure_code is None
    assert payment.failure_message is None


@pytest.mark.parametrize("make", [initiate_payment, succeeded_payment, refunded_payment])
def test_retrying_a_payment_that_has_not_failed_is_refused(make: object) -> None:
    payment = make()  # type: ignore[operator]
    assert_refused(payment, InvalidTransition, lambda: payment.retry(occurred_at=LATER))
    assert payment.attempt == 1


# ---------------------------------------------------------------- refund


def test_a_partial_refund_keeps_the_payment_succeeded() -> None:
    payment = succeeded_payment(1000)
    payment.collect_events()
    payment.refund(amount=300, occurred_at=at(2025, 2, 5))
    (refunded,) = payment.collect_events()
    assert type(refunded).__name__ == "Refunded"
    assert refunded.amount == 300  # type: ignore[attr-defined]
    assert refunded.amount_refunded == 300  # type: ignore[attr-defined]
    assert payment.status == SUCCEEDED
    assert payment.amount_refunded == 300


def test_refunding_everything_marks_the_payment_refunded() -> None:
    payment = succeeded_payment(1000)
    payment.refund(amount=300, occurred_at=at(2025, 2, 5))
    payment.refund(amount=700, occurred_at=at(2025, 2, 6))
    assert payment.status == REFUNDED
    assert payment.amount_refunded == 1000


def test_a_full_refund_in_one_go_marks_the_payment_refunded() -> None:
    assert refunded_payment().status == REFUNDED


def test_refunding_more_than_was_paid_is_refused() -> None:
    payment = succeeded_payment(1000)
    error = assert_refused(
        payment, RefundExceedsPayment, lambda: payment.refund(amount=1001, occurred_at=LATER)
    )
    assert error.field == "amount"


def test_refunding_more_than_remains_refundable_is_refused() -> None:
    payment = succeeded_payment(1000)
    payment.refund(amount=600, occurred_at=LATER)
    assert_refused(payment, RefundExceedsPayment, lambda: payment.refund(amount=401, occurred_at=LATER))
    assert payment.amount_refunded == 600


def test_refunding_a_fully_refunded_payment_is_refused() -> None:
    payment = refunded_payment()
    assert_refused(payment, RefundExceedsPayment, lambda: payment.refund(amount=1, occurred_at=LATER))


@pytest.mark.parametrize("amount", [0, -5])
def test_a_refund_amount_that_is_not_positive_is_refused(amount: int) -> None:
    payment = succeeded_payment()
    error = assert_refused(payment, InvalidValue, lambda: payment.refund(amount=amount, occurred_at=LATER))
    assert error.field == "amount"


@pytest.mark.parametrize("make", [initiate_payment, failed_payment])
def test_refunding_a_payment_that_did_not_succeed_is_refused(make: object) -> None:
    payment = make()  # type: ignore[operator]
    assert_refused(payment, InvalidTransition, lambda: payment.refund(amount=1, occurred_at=LATER))


@settings(deadline=None)
@given(
    st.integers(min_value=1, max_value=10**6),
    st.lists(st.integers(min_value=1, max_value=10**6), max_size=10),
)
def test_refunds_never_exceed_the_amount_paid(amount: int, refunds: list[int]) -> None:
    payment = succeeded_payment(amount)
    for refund in refunds:
        if refund > amount - payment.amount_refunded:
            with pytest.raises(RefundExceedsPayment):
                payment.refund(amount=refund, occurred_at=LATER)
        else:
            payment.refund(amount=refund, occurred_at=LATER)
        assert 0 <= payment.amount_refunded <= amount
        assert (payment.status == REFUNDED) == (payment.amount_refunded == amount)


# ---------------------------------------------------------------- history


def test_a_payment_rebuilt_from_its_events_has_the_same_state() -> None:
    payment = initiate_payment(1000, invoice_id=uuid4())
    fail(payment)
    payment.retry(occurred_at=at(2025, 2, 3))
    payment.succeed(occurred_at=at(2025, 2, 3))
    payment.refund(amount=250, occurred_at=at(2025, 2, 9))
    copy = assert_rebuilds_identically(payment)
    assert (copy.status, copy.attempt, copy.amount_refunded) == (SUCCEEDED, 2, 250)
