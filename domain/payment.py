from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import event

from domain import ids
from domain.base import LedgerAggregate
from domain.errors import InvalidTransition, InvalidValue, PaymentNotPending, RefundExceedsPayment
from domain.money import check_amount, check_currency

PENDING, SUCCEEDED, FAILED, REFUNDED, CANCELED = "pending", "succeeded", "failed", "refunded", "canceled"
MANUAL, BACKEND = "manual", "backend"


class Payment(LedgerAggregate):
    @classmethod
    def initiate(
        cls,
        *,
        customer_id: UUID,
        invoice_id: UUID | None,
        amount: int,
        currency: str,
        provider_reference: str | None,
        occurred_at: datetime,
        payment_id: UUID | None = None,
        method: str = MANUAL,
        attempt: int = 1,
    ) -> Payment:
        check_currency(currency)
        if amount <= 0:
            raise InvalidValue("a payment amount is positive", field="amount")
        check_amount(amount)
        return cls._created_with_id(
            payment_id,
            "Initiated",
            customer_id=customer_id,
            invoice_id=invoice_id,
            amount=amount,
            currency=currency,
            provider_reference=provider_reference,
            occurred_at=occurred_at,
            method=method,
            attempt=attempt,
        )

    @event("Initiated")
    def __init__(
        self,
        customer_id: UUID,
        invoice_id: UUID | None,
        amount: int,
        currency: str,
        provider_reference: str | None,
        occurred_at: datetime,
        method: str = MANUAL,
        attempt: int = 1,
    ) -> None:
        self.customer_id = customer_id
        self.invoice_id = invoice_id
        self.amount = amount
        self.currency = currency
        self.provider_reference = provider_reference
        self.status = PENDING
        # `manual`: recorded by hand or mirrored from a provider; `backend`: collected by the
        # ledger through its payment backend (submitted once it has the backend's id).
        self.method = method
        self.attempt = attempt
        self.external_payment_id: str | None = None
        self.payment_url: str | None = None
        self.failure_code: str | None = None
        self.failure_message: str | None = None
        self.amount_refunded = 0
        self.initiated_at = occurred_at

    def check_pending(self) -> None:
        if self.status != PENDING:
            raise PaymentNotPending(f"a {self.status} payment has no outcome to record")

    def succeed(self, *, occurred_at: datetime) -> None:
        self.check_pending()
        self._succeed(occurred_at=occurred_at)

    @event("Succeeded")
    def _succeed(self, occurred_at: datetime) -> None:
        self.status = SUCCEEDED
        self.failure_code = None
        self.failure_message = None

    def fail(self, *, failure_code: str | None, failure_message: str | None, occurred_at: datetime) -> None:
        self.check_pending()
        self._fail(failure_code=failure_code, failure_message=failure_message, occurred_at=occurred_at)

    @event("Failed")
    def _fail(self, failure_code: str | None, failure_message: str | None, occurred_at: datetime) -> None:
        self.status = FAILED
        self.failure_code = failure_code
        self.failure_message = failure_message

    def retry(self, *, occurred_at: datetime) -> None:
        if self.status != FAILED:
            raise InvalidTransition(f"only a failed payment can be retried, not a {self.status} one")
        self._retry(attempt=self.attempt + 1, occurred_at=occurred_at)

    @event("Retried")
    def _retry(self, attempt: int, occurred_at: datetime) -> None:
        self.status = PENDING
        self.attempt = attempt
        if self.method == BACKEND:
            self.external_payment_id = None  # tried again: submitted anew, under a new key
            self.payment_url = None

    def check_submittable(self) -> None:
        if self.method != BACKEND:
            raise InvalidTransition("only a payment the ledger collects goes to its payment backend")
        if self.external_payment_id is not None:
            raise InvalidTransition("the payment was already submitted to the payment backend")

    def submit(self, *, external_payment_id: str, payment_url: str | None, occurred_at: datetime) -> None:
        """The payment backend took the payment under its own id."""
        self.check_submittable()
        if not external_payment_id.strip():
            raise InvalidValue("the backend's payment id cannot be blank", field="external_payment_id")
        self._submit(
            external_payment_id=external_payment_id, payment_url=payment_url, occurred_at=occurred_at
        )

    @event("Submitted")
    def _submit(self, external_payment_id: str, payment_url: str | None, occurred_at: datetime) -> None:
        self.external_payment_id = external_payment_id
        self.payment_url = payment_url

    def cancel(self, *, reason: str, occurred_at: datetime) -> None:
        """No money will come of this payment (the backend or the customer canceled it)."""
        self.check_pending()
        self._cancel(reason=reason, occurred_at=occurred_at)

    @event("Canceled")
    def _cancel(self, reason: str, occurred_at: datetime) -> None:
        self.status = CANCELED

    def attach_to_invoice(self, *, invoice_id: UUID, occurred_at: datetime) -> None:
        """Name the invoice a payment made without one was for. A provider may say so only
        later: since Stripe's API 2025-03-31 a PaymentIntent does not name its invoice, an
        `invoice_payment` links them, and it may arrive after the payment."""
        if self.invoice_id is not None:
            raise InvalidTransition("the payment already names its invoice")
        self._attach_to_invoice(invoice_id=invoice_id, occurred_at=occurred_at)

    @event("AttachedToInvoice")
    def _attach_to_invoice(self, invoice_id: UUID, occurred_at: datetime) -> None:
        self.invoice_id = invoice_id

    @property
    def refundable(self) -> int:
        """What can still be refunded of a succeeded payment."""
        return self.amount - self.amount_refunded if self.status in (SUCCEEDED, REFUNDED) else 0

    def refund(self, *, amount: int, occurred_at: datetime) -> None:
        if self.status not in (SUCCEEDED, REFUNDED):
            raise InvalidTransition(f"a {self.status} payment cannot be refunded")
        if amount <= 0:
            raise InvalidValue("a refund amount is positive", field="amount")
        refundable = self.amount - self.amount_refunded
        if amount > refundable:
            raise RefundExceedsPayment(
                f"{amount} exceeds the {refundable} still refundable on this payment", field="amount"
            )
        self._refund(amount=amount, amount_refunded=self.amount_refunded + amount, occurred_at=occurred_at)

    @event("Refunded")
    def _refund(self, amount: int, amount_refunded: int, occurred_at: datetime) -> None:
        self.amount_refunded = amount_refunded
        if amount_refunded == self.amount:
            self.status = REFUNDED


class PaymentReference(LedgerAggregate):
    """The payment backend's id of a payment, leading to the ledger's payment (a callback names
    only the former). Its id derives from the backend's id: `ids.backend_payment_reference_id`."""

    @classmethod
    def record(
        cls, *, external_payment_id: str, payment_id: UUID, customer_id: UUID, occurred_at: datetime
    ) -> PaymentReference:
        return cls._created_with_id(
            ids.backend_payment_reference_id(external_payment_id),
            "Recorded",
            external_payment_id=external_payment_id,
            payment_id=payment_id,
            customer_id=customer_id,
            occurred_at=occurred_at,
        )

    @event("Recorded")
    def __init__(
        self, external_payment_id: str, payment_id: UUID, customer_id: UUID, occurred_at: datetime
    ) -> None:
        self.external_payment_id = external_payment_id
        self.payment_id = payment_id
        self.customer_id = customer_id
