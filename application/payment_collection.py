"""Collecting payments through the payment backend (SPEC 8): use cases of the `Ledger`
application (its methods of the same names call these).

An attempt is recorded first, as a pending payment of method `backend` whose id derives from
the invoice and the attempt's number; then it is submitted to the backend (`infra/
payment_backend.py`, driven by `projections/collector.py`) under an idempotency key derived from
the payment, and the backend's id is recorded with it. So a backend that is down, slow or answers
twice never loses an attempt nor makes two: the attempt waits, pending, until it is submitted, and
a submission made again is the same payment at the backend. Its outcome comes from the backend's
signed callback or from polling its status; each outcome is an event, recorded once."""

from __future__ import annotations

from typing import TYPE_CHECKING

from application import commands as c
from application import receipts
from application.outcome import Outcome
from domain import ids
from domain.dunning import CHARGE_AUTOMATICALLY
from domain.errors import InvalidTransition, InvalidValue, NotFound, PaymentNotPending
from domain.invoice import OPEN, Invoice
from domain.payment import BACKEND, CANCELED, FAILED, PENDING, SUCCEEDED, Payment, PaymentReference

if TYPE_CHECKING:
    from application.ledger import Ledger

OUTCOMES = (SUCCEEDED, FAILED, CANCELED)


def start_collection(ledger: Ledger, cmd: c.StartCollection, ctx: c.CommandContext) -> Outcome | None:
    """Record the `attempt`-th attempt to collect an open, automatically collected invoice, for
    what remains on it; None when there is nothing to attempt (paid meanwhile, the previous
    attempt still pending, or this attempt already made)."""

    def use_case(ctx: c.CommandContext) -> Outcome | None:
        invoice = ledger._get(Invoice, cmd.invoice_id, "invoice")
        if (
            invoice.status != OPEN
            or invoice.amount_remaining <= 0
            or invoice.collection_method != CHARGE_AUTOMATICALLY
        ):
            return None
        payment_id = ids.collection_attempt_id(invoice.id, cmd.attempt)
        if ledger._find(payment_id) is not None:
            return None
        if any(
            isinstance(earlier := ledger._find(ids.collection_attempt_id(invoice.id, n)), Payment)
            and earlier.status == PENDING
            for n in range(1, cmd.attempt)
        ):
            return None  # one attempt at a time: the pending one's outcome decides what follows
        payment = Payment.initiate(
            customer_id=invoice.customer_id,
            invoice_id=invoice.id,
            amount=invoice.amount_remaining,
            currency=invoice.currency,
            provider_reference=None,
            occurred_at=ctx.occurred_at,
            payment_id=payment_id,
            method=BACKEND,
            attempt=cmd.attempt,
        )
        return ledger._commit(ctx, payment, receipts.payment_receipt(payment), created=True)

    return ledger._run(ctx, use_case)  # type: ignore[arg-type]


def submit_payment(ledger: Ledger, cmd: c.SubmitPayment, ctx: c.CommandContext) -> Outcome:
    """Record the backend's id of a payment, and where that id leads (its callbacks name it)."""

    def use_case(ctx: c.CommandContext) -> Outcome:
        payment = ledger._get(Payment, cmd.payment_id, "payment")
        payment.submit(
            external_payment_id=cmd.external_payment_id,
            payment_url=cmd.payment_url,
            occurred_at=ctx.occurred_at,
        )
        reference = ledger._find(ids.backend_payment_reference_id(cmd.external_payment_id))
        if reference is None:
            reference = PaymentReference.record(
                external_payment_id=cmd.external_payment_id,
                payment_id=payment.id,
                customer_id=payment.customer_id,
                occurred_at=ctx.occurred_at,
            )
        elif not isinstance(reference, PaymentReference) or reference.payment_id != payment.id:
            raise InvalidValue(
                "the payment backend gave an id it already gave another payment",
                field="external_payment_id",
            )
        return ledger._commit(ctx, payment, receipts.payment_receipt(payment), reference)

    return ledger._run(ctx, use_case)


def payment_of_backend_id(ledger: Ledger, external_payment_id: str) -> Payment:
    reference = ledger._find(ids.backend_payment_reference_id(external_payment_id))
    if not isinstance(reference, PaymentReference):
        raise NotFound(f"no payment with the backend's id '{external_payment_id[:100]}'")
    return ledger._get(Payment, reference.payment_id, "payment")


def record_backend_outcome(ledger: Ledger, cmd: c.RecordBackendOutcome, ctx: c.CommandContext) -> Outcome:
    """What the backend says became of a payment. The same outcome again records nothing (a
    callback sent twice, a poll after the callback); a different outcome for a payment that has
    one already is refused (InvalidTransition), as is an amount or currency that is not the
    payment's."""
    if cmd.status not in OUTCOMES:
        raise InvalidValue(f"status is one of {', '.join(OUTCOMES)}", field="status")
    payment = payment_of_backend_id(ledger, cmd.external_payment_id)
    if payment.external_payment_id != cmd.external_payment_id:
        raise InvalidTransition("this backend id belongs to an earlier try of the payment")
    if cmd.amount is not None and cmd.amount != payment.amount:
        raise InvalidValue(f"the payment is of {payment.amount}, not {cmd.amount}", field="amount")
    if cmd.currency is not None and cmd.currency != payment.currency:
        raise InvalidValue(f"the payment is in {payment.currency}", field="currency")
    if payment.status != PENDING:
        if payment.status == cmd.status or (payment.status != FAILED and cmd.status == SUCCEEDED):
            # Already known (a refund since does not make a success news).
            position = ledger.store.position_of(payment.id) or 0
            return Outcome(payment.id, receipts.payment_receipt(payment), position)
        raise PaymentNotPending(f"the payment is already {payment.status}, the backend now says {cmd.status}")
    if cmd.status == SUCCEEDED:
        return ledger.succeed_payment(c.SucceedPayment(payment.id), ctx)
    if cmd.status == FAILED:
        return ledger.fail_payment(c.FailPayment(payment.id, cmd.failure_code, cmd.failure_message), ctx)
    return ledger.cancel_payment(c.CancelPayment(payment.id, cmd.failure_message or "canceled"), ctx)


def cancel_payment(ledger: Ledger, cmd: c.CancelPayment, ctx: c.CommandContext) -> Outcome:
    """No money will come of this payment; for its invoice's dunning it is an attempt that failed."""

    def use_case(ctx: c.CommandContext) -> Outcome:
        payment = ledger._get(Payment, cmd.payment_id, "payment")
        payment.cancel(reason=cmd.reason, occurred_at=ctx.occurred_at)
        invoice, _ = ledger._invoice_and_subscription(payment, ctx.occurred_at)
        if invoice is not None:
            invoice.record_failed_payment(
                payment_id=payment.id, occurred_at=ctx.occurred_at, policy=ledger.dunning
            )
        return ledger._commit(ctx, payment, receipts.payment_receipt(payment), invoice)

    return ledger._run(ctx, use_case)
