from __future__ import annotations

import pytest

from domain import errors


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.InvalidValue, "invalid_value"),
        (errors.CurrencyMismatch, "currency_mismatch"),
        (errors.NotFound, "not_found"),
        (errors.AlreadyExists, "already_exists"),
        (errors.InvalidTransition, "invalid_transition"),
        (errors.CustomerArchived, "customer_archived"),
        (errors.PlanRetired, "plan_retired"),
        (errors.SubscriptionCanceled, "subscription_canceled"),
        (errors.InvoiceNotDraft, "invoice_not_draft"),
        (errors.InvoiceNotOpen, "invoice_not_open"),
        (errors.EmptyInvoice, "empty_invoice"),
        (errors.Overpayment, "overpayment"),
        (errors.PaymentNotPending, "payment_not_pending"),
        (errors.RefundExceedsPayment, "refund_exceeds_payment"),
        (errors.AlertAlreadyResolved, "alert_already_resolved"),
        (errors.IdempotencyKeyReused, "idempotency_key_reused"),
    ],
)
def test_every_domain_error_has_a_stable_machine_readable_code(
    error: type[errors.DomainError], code: str
) -> None:
    assert error.code == code
    raised = error("something is wrong", field="amount")
    assert isinstance(raised, errors.DomainError)
    assert raised.message == "something is wrong"
    assert str(raised) == "something is wrong"
    assert raised.field == "amount"


@pytest.mark.parametrize(
    "error",
    [
        errors.CustomerArchived,
        errors.PlanRetired,
        errors.SubscriptionCanceled,
        errors.InvoiceNotDraft,
        errors.InvoiceNotOpen,
        errors.EmptyInvoice,
        errors.Overpayment,
        errors.PaymentNotPending,
        errors.RefundExceedsPayment,
        errors.AlertAlreadyResolved,
    ],
)
def test_lifecycle_refusals_are_invalid_transitions(error: type[errors.DomainError]) -> None:
    assert issubclass(error, errors.InvalidTransition)


def test_a_domain_error_names_no_field_unless_told() -> None:
    assert errors.DomainError("nope").field is None
    assert errors.DomainError.code == "domain_error"
