"""What a command answers: the resulting state of its resource, as plain JSON-ready data.

A receipt is also what an idempotent retry answers, so it is stored with the command record."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from domain.alert import Alert
from domain.clock import ClockTick
from domain.coupon import Coupon
from domain.credit_note import CreditNote
from domain.customer import Customer
from domain.invoice import Invoice
from domain.onboarding import Onboarding
from domain.payment import Payment
from domain.plan import Plan
from domain.rules import monthly_recurring_amount
from domain.subscription import Subscription


def _time(value: datetime | date | None) -> str | None:
    return value.isoformat() if value is not None else None


def plan_receipt(plan: Plan) -> dict[str, Any]:
    return {
        "id": str(plan.id),
        "code": plan.code,
        **plan.terms(),
        "status": "retired" if plan.retired_at else "active",
        "version": plan.version,
    }


def customer_receipt(customer: Customer) -> dict[str, Any]:
    return {
        "id": str(customer.id),
        "external_id": customer.external_id,
        "email": customer.email,
        "name": customer.name,
        "currency": customer.currency,
        "tax_rate_bps": customer.tax_rate_bps,
        "tax_exempt": customer.tax_exempt,
        "vat_id": customer.vat_id,
        "address": customer.address,
        "net_terms_days": customer.net_terms_days,
        "collection_method": customer.collection_method,
        "discount": customer.discount,
        "metadata": customer.metadata,
        "archived": customer.is_archived,
        "created_at": _time(customer.registered_at),
    }


def onboarding_receipt(onboarding: Onboarding) -> dict[str, Any]:
    return {
        "customer_id": str(onboarding.customer_id),
        "subscription_id": str(onboarding.subscription_id),
        "trial_end": _time(onboarding.trial_end),
        "ingest_key_id": str(onboarding.key_id),
    }


def subscription_receipt(sub: Subscription) -> dict[str, Any]:
    return {
        "id": str(sub.id),
        "customer_id": str(sub.customer_id),
        "plan_code": sub.plan_code,
        "quantity": sub.quantity,
        "status": sub.status,
        "amount": sub.amount,
        "currency": sub.currency,
        "interval": sub.interval,
        "interval_count": sub.interval_count,
        "current_period_start": _time(sub.current_period_start),
        "current_period_end": _time(sub.current_period_end),
        "trial_end": _time(sub.trial_end),
        "cancel_at_period_end": sub.cancel_at_period_end,
        "cancel_at": _time(sub.cancel_at),
        "canceled_at": _time(sub.canceled_at),
        "ended_at": _time(sub.ended_at),
        "started_at": _time(sub.started_at),
        "billed_by": sub.billed_by,
        "discount": sub.discount,
        "items": [item_view(sub, item) for item in sub.items.values()],
    }


def item_view(sub: Subscription, item: dict[str, Any]) -> dict[str, Any]:
    """An add-on item as a subscription lists it (the read model keeps the same fields)."""
    return {
        "id": item["id"],
        "plan_code": item["plan_code"],
        "name": item["name"],
        "amount": item["amount"],
        "currency": sub.currency,
        "interval": item["interval"],
        "interval_count": item["interval_count"],
        "quantity": item["quantity"],
        "monthly_amount": monthly_recurring_amount(
            item["amount"], item["quantity"], item["interval"], item["interval_count"]
        ),
        "added_at": _time(item["added_at"]),
    }


def item_receipt(
    sub: Subscription, item: dict[str, Any], removed_at: datetime | None = None
) -> dict[str, Any]:
    """What an item command answers: the item (as it was, when removed) and its subscription."""
    return {**item_view(sub, item), "subscription_id": str(sub.id), "removed_at": _time(removed_at)}


def invoice_receipt(invoice: Invoice) -> dict[str, Any]:
    return {
        "id": str(invoice.id),
        "customer_id": str(invoice.customer_id),
        "subscription_id": str(invoice.subscription_id) if invoice.subscription_id else None,
        "number": invoice.number,
        "status": invoice.status,
        "currency": invoice.currency,
        "lines": invoice.lines,
        "subtotal": invoice.subtotal,
        "discount": invoice.discount,
        "tax": invoice.tax,
        "total": invoice.total,
        "amount_paid": invoice.amount_paid,
        "amount_credited": invoice.amount_credited,
        "balance_applied": invoice.balance_applied,
        "amount_remaining": invoice.amount_remaining,
        "billing_reason": invoice.billing_reason,
        "period_start": _time(invoice.period_start),
        "period_end": _time(invoice.period_end),
        "tax_rate_bps": invoice.tax_rate_bps,
        "tax_exempt": invoice.tax_exempt,
        "tax_note": invoice.tax_note,
        "coupon": invoice.coupon,
        "due_date": _time(invoice.due_date),
        "created_at": _time(invoice.drafted_at),
        "finalized_at": _time(invoice.finalized_at),
        "collection_method": invoice.collection_method,
        "dunning": dunning_view(invoice),
    }


def dunning_view(invoice: Invoice) -> dict[str, Any] | None:
    """SPEC 8: `{state, attempts, next_action_at}`, with the steps taken and the final action."""
    if invoice.dunning is None:
        return None
    return {
        "state": invoice.dunning["state"],
        "attempts": invoice.payment_failures,
        "next_action_at": _time(invoice.next_due_at),
        "steps_taken": len(invoice.dunning["steps"]),
        "final_action": invoice.dunning["final_action"],
    }


def payment_receipt(payment: Payment) -> dict[str, Any]:
    return {
        "id": str(payment.id),
        "customer_id": str(payment.customer_id),
        "invoice_id": str(payment.invoice_id) if payment.invoice_id else None,
        "amount": payment.amount,
        "currency": payment.currency,
        "status": payment.status,
        "attempt": payment.attempt,
        "failure_code": payment.failure_code,
        "failure_message": payment.failure_message,
        "amount_refunded": payment.amount_refunded,
        "provider_reference": payment.provider_reference,
        "method": payment.method,
        "external_payment_id": payment.external_payment_id,
        "payment_url": payment.payment_url,
        "created_at": _time(payment.initiated_at),
    }


def alert_receipt(alert: Alert) -> dict[str, Any]:
    return {
        "id": str(alert.id),
        "type": alert.alert_type,
        "severity": alert.severity,
        "status": alert.status,
        "customer_id": str(alert.customer_id) if alert.customer_id else None,
        "subject": alert.subject,
        "message": alert.message,
        "raised_at": _time(alert.raised_at),
        "resolved_at": _time(alert.resolved_at),
        "note": alert.note,
    }


def clock_tick_receipt(tick: ClockTick) -> dict[str, Any]:
    return {"id": str(tick.id), "day": tick.day.isoformat(), "recorded_for": _time(tick.occurred_at)}


def receipt_of(aggregate: object) -> dict[str, Any]:
    """The receipt of whatever aggregate the clock advanced."""
    if isinstance(aggregate, Subscription):
        return subscription_receipt(aggregate)
    if isinstance(aggregate, Invoice):
        return invoice_receipt(aggregate)
    return {"id": str(getattr(aggregate, "id", ""))}


def coupon_receipt(coupon: Coupon) -> dict[str, Any]:
    return {"id": str(coupon.id), **coupon.terms()}


def credit_note_receipt(note: CreditNote) -> dict[str, Any]:
    return {
        "id": str(note.id),
        "number": note.number,
        "invoice_id": str(note.invoice_id),
        "customer_id": str(note.customer_id),
        "currency": note.currency,
        "reason": note.reason,
        "amount": note.amount,
        "lines": note.lines,
        "against_remaining": note.against_remaining,
        "refund_amount": note.refund_amount,
        "credit_amount": note.credit_amount,
        "memo": note.memo,
        "created_at": _time(note.issued_at),
    }
