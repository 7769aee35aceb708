"""Named domain errors. Guards raise these; the API maps them to problem+json."""

from __future__ import annotations


class DomainError(Exception):
    """A business rule refused the command. `code` is stable and machine-readable."""

    code = "domain_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidValue(DomainError):
    """An input value breaks a rule (negative amount, unknown currency...)."""

    code = "invalid_value"


class CurrencyMismatch(DomainError):
    code = "currency_mismatch"


class NotFound(DomainError):
    """A referenced resource does not exist."""

    code = "not_found"


class AlreadyExists(DomainError):
    """The natural key is taken by a resource with different attributes."""

    code = "already_exists"


class InvalidTransition(DomainError):
    """The aggregate's current status does not allow the command."""

    code = "invalid_transition"


class CustomerArchived(InvalidTransition):
    code = "customer_archived"


class PlanRetired(InvalidTransition):
    code = "plan_retired"


class SubscriptionCanceled(InvalidTransition):
    code = "subscription_canceled"


class InvoiceNotDraft(InvalidTransition):
    code = "invoice_not_draft"


class InvoiceNotOpen(InvalidTransition):
    code = "invoice_not_open"


class EmptyInvoice(InvalidTransition):
    code = "empty_invoice"


class Overpayment(InvalidTransition):
    code = "overpayment"


class PaymentNotPending(InvalidTransition):
    code = "payment_not_pending"


class RefundExceedsPayment(InvalidTransition):
    code = "refund_exceeds_payment"


class AlertAlreadyResolved(InvalidTransition):
    code = "alert_already_resolved"


class AlertAlreadyOpen(InvalidTransition):
    code = "alert_already_open"


class IdempotencyKeyReused(DomainError):
    """The same idempotency key came back with a different request."""

    code = "idempotency_key_reused"


class TimeOutOfRange(DomainError):
    """A business time outside [2000-01-01, now + 5 minutes]: nothing is recorded in the future,
    and nothing before the ledger's epoch."""

    code = "time_out_of_range"


class ChangeOutOfOrder(InvalidTransition):
    """A backdated command would take effect before a change already recorded on the aggregate."""

    code = "change_out_of_order"


class TestClockDisabled(DomainError):
    """The test clock may move only where LEDGER_ALLOW_TEST_CLOCK=true (never in production)."""

    __test__ = False
    code = "test_clock_disabled"


class CreditNoteExceedsInvoice(InvalidTransition):
    """Credit notes on an invoice would total more than the invoice."""

    code = "credit_note_exceeds_invoice"


class WebhookEndpointDisabled(InvalidTransition):
    """The webhook endpoint was disabled (it answered 410 Gone): nothing is sent to it."""

    code = "webhook_endpoint_disabled"


class WebhookDeliveryInFlight(InvalidTransition):
    """An attempt of this delivery is being sent right now: resend once it has an outcome."""

    code = "webhook_delivery_in_flight"


class InvoiceNotFinalized(InvalidTransition):
    """A draft has no number and may still change: it has no document yet."""

    code = "invoice_not_finalized"


class UnknownItem(NotFound):
    """The subscription carries no (live) add-on item with that id: 404."""

    code = "unknown_item"


class ItemExists(AlreadyExists):
    """The add-on (or the subscription's own plan) is already on the subscription: change the
    item's quantity instead of adding it twice."""

    code = "item_exists"


class IntervalMismatch(InvalidValue):
    """Add-on items share their subscription's billing interval (they are billed on its
    invoices, in advance for its periods)."""

    code = "interval_mismatch"
