"""Webhook bodies shaped like Stripe's own objects (API version 2024-06-20), signed as Stripe
signs them: `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body" with the secret>`."""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime
from typing import Any

import orjson

SECRET = "whsec_test_3f1b2c4d5e6f7a8b9c0d"
DAY = 86_400
T0 = 1_740_000_000  # 2025-02-19T21:20:00Z


def sign(body: bytes, secret: str = SECRET, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def envelope(event_id: str, event_type: str, created: int, obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def body_of(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)


def customer(
    cus: str, *, email: str = "jenny.rosen@example.com", currency: str | None = None
) -> dict[str, Any]:
    return {
        "id": cus,
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": T0,
        "currency": currency,
        "default_source": None,
        "delinquent": False,
        "description": None,
        "email": email,
        "invoice_prefix": "8D7A1B2C",
        "livemode": False,
        "metadata": {"account": "acme"},
        "name": "Jenny Rosen",
        "phone": None,
        "preferred_locales": [],
        "tax_exempt": "none",
    }


PRICE = {
    "id": "price_1MowQULkdIwHu7ixraBm864M",
    "object": "price",
    "active": True,
    "billing_scheme": "per_unit",
    "created": T0 - 30 * DAY,
    "currency": "eur",
    "livemode": False,
    "lookup_key": None,
    "metadata": {},
    "nickname": "Pro monthly",
    "product": "prod_NWjs8kKbJWmuuc",
    "recurring": {
        "aggregate_usage": None,
        "interval": "month",
        "interval_count": 1,
        "usage_type": "licensed",
    },
    "tax_behavior": "exclusive",
    "type": "recurring",
    "unit_amount": 2000,
    "unit_amount_decimal": "2000",
}

SUB_START = T0 + 60
TRIAL_END = SUB_START + 14 * DAY
PERIOD_END = int(datetime(2025, 4, 5, 21, 21, tzinfo=UTC).timestamp())  # one month after the trial


def subscription(
    sub: str,
    cus: str,
    *,
    status: str,
    quantity: int,
    period: tuple[int, int],
    canceled_at: int | None = None,
    ended_at: int | None = None,
    latest_invoice: str | None = None,
) -> dict[str, Any]:
    return {
        "id": sub,
        "object": "subscription",
        "billing_cycle_anchor": TRIAL_END,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": canceled_at,
        "collection_method": "charge_automatically",
        "created": SUB_START,
        "currency": "eur",
        "current_period_end": period[1],
        "current_period_start": period[0],
        "customer": cus,
        "ended_at": ended_at,
        "items": {
            "object": "list",
            "data": [
                {
                    "id": f"si_{sub[4:]}",
                    "object": "subscription_item",
                    "created": SUB_START,
                    "metadata": {},
                    "price": PRICE,
                    "quantity": quantity,
                    "subscription": sub,
                }
            ],
            "has_more": False,
            "url": f"/v1/subscription_items?subscription={sub}",
        },
        "latest_invoice": latest_invoice,
        "livemode": False,
        "metadata": {},
        "quantity": quantity,
        "start_date": SUB_START,
        "status": status,
        "trial_end": TRIAL_END,
        "trial_start": SUB_START,
    }


def invoice(
    inv: str,
    cus: str,
    sub: str,
    *,
    status: str,
    created: int,
    finalized_at: int | None,
    amount_paid: int = 0,
    attempt_count: int = 0,
    attempted: bool = False,
    paid_at: int | None = None,
    payment_intent: str | None = None,
) -> dict[str, Any]:
    subtotal, tax = 4000, 800
    total = subtotal + tax
    return {
        "id": inv,
        "object": "invoice",
        "account_country": "FR",
        "amount_due": total,
        "amount_paid": amount_paid,
        "amount_remaining": total - amount_paid,
        "attempt_count": attempt_count,
        "attempted": attempted,
        "auto_advance": True,
        "billing_reason": "subscription_cycle",
        "collection_method": "charge_automatically",
        "created": created,
        "currency": "eur",
        "customer": cus,
        "customer_email": "jenny.rosen@example.com",
        "due_date": None,
        "lines": {
            "object": "list",
            "data": [
                {
                    "id": f"il_{inv[3:]}",
                    "object": "line_item",
                    "amount": subtotal,
                    "currency": "eur",
                    "description": "2 × Pro monthly (at €20.00 / month)",
                    "period": {"start": TRIAL_END, "end": PERIOD_END},
                    "price": PRICE,
                    "quantity": 2,
                    "type": "subscription",
                }
            ],
            "has_more": False,
        },
        "number": "8D7A1B2C-0001",
        "paid": status == "paid",
        "payment_intent": payment_intent,
        "status": status,
        "status_transitions": {
            "finalized_at": finalized_at,
            "marked_uncollectible_at": None,
            "paid_at": paid_at,
            "voided_at": None,
        },
        "subscription": sub,
        "subtotal": subtotal,
        "subtotal_excluding_tax": subtotal,
        "tax": tax,
        "total": total,
        "total_excluding_tax": subtotal,
    }


def lifecycle(suffix: str) -> list[dict[str, Any]]:
    """A realistic history, in Stripe's order: customer, subscription created (trial) and
    updated (trial over, quantity 2), invoice finalized, payment failed, invoice paid after a
    retry, subscription deleted."""
    cus, sub, inv, pi = f"cus_{suffix}", f"sub_{suffix}", f"in_{suffix}", f"pi_{suffix}"
    period = (TRIAL_END, PERIOD_END)
    finalized, failed, paid, deleted = (
        TRIAL_END + 3600,
        TRIAL_END + 7200,
        TRIAL_END + 3 * DAY,
        TRIAL_END + 10 * DAY,
    )
    common = {"payment_intent": pi, "created": TRIAL_END, "finalized_at": finalized}
    return [
        envelope(f"evt_{suffix}_1", "customer.created", T0, customer(cus)),
        envelope(
            f"evt_{suffix}_2",
            "customer.subscription.created",
            SUB_START,
            subscription(sub, cus, status="trialing", quantity=1, period=(SUB_START, TRIAL_END)),
        ),
        envelope(
            f"evt_{suffix}_3",
            "customer.subscription.updated",
            TRIAL_END,
            subscription(sub, cus, status="active", quantity=2, period=period, latest_invoice=inv),
        ),
        envelope(
            f"evt_{suffix}_4", "invoice.finalized", finalized, invoice(inv, cus, sub, status="open", **common)
        ),
        envelope(
            f"evt_{suffix}_5",
            "invoice.payment_failed",
            failed,
            invoice(inv, cus, sub, status="open", attempt_count=1, attempted=True, **common),
        ),
        envelope(
            f"evt_{suffix}_6",
            "invoice.paid",
            paid,
            invoice(
                inv,
                cus,
                sub,
                status="paid",
                amount_paid=4800,
                attempt_count=2,
                attempted=True,
                paid_at=paid,
                **common,
            ),
        ),
        envelope(
            f"evt_{suffix}_7",
            "customer.subscription.deleted",
            deleted,
            subscription(
                sub, cus, status="canceled", quantity=2, period=period, canceled_at=deleted, ended_at=deleted
            ),
        ),
    ]
