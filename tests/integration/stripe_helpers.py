"""Webhook bodies shaped like Stripe's own objects, signed as Stripe signs them:
`Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body" with the secret>`.

Two API versions: 2024-06-20 (`lifecycle`: an invoice names its subscription and PaymentIntent,
a PaymentIntent its invoice) and the current shapes, since 2025-03-31 (`current_lifecycle`: the
invoice's subscription is under `parent.subscription_details`, periods are on the subscription's
items, lines are priced by `pricing`, and only an `invoice_payment` links an invoice to the
PaymentIntent that paid it), as in Stripe's API reference and the `stripe` package's types."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi.testclient import TestClient

from application import receipts
from domain import ids
from infra.bootstrap import Container

SECRET = "whsec_test_3f1b2c4d5e6f7a8b9c0d"
DAY = 86_400
T0 = 1_740_000_000  # 2025-02-19T21:20:00Z


def sign(body: bytes, secret: str = SECRET, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


CURRENT_API = "2025-03-31.basil"


def envelope(
    event_id: str, event_type: str, created: int, obj: dict[str, Any], api_version: str = "2024-06-20"
) -> dict[str, Any]:
    return {
        "id": event_id,
        "object": "event",
        "api_version": api_version,
        "created": created,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def body_of(event: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(event)
    except TypeError:  # an integer beyond 64 bits, which a sender may still write
        return json.dumps(event).encode()


def deliver(client: TestClient, event: dict[str, Any], **sign_kwargs: Any) -> Any:
    """POST the event to the webhook endpoint, signed as Stripe signs it."""
    body = body_of(event)
    return client.post(
        "/v1/webhooks/stripe",
        content=body,
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": sign(body, **sign_kwargs),
        },
    )


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


def ledger_state(container: Container, suffix: str) -> dict[str, Any]:
    """What the ledger holds for one lifecycle, as its receipts (the read side of a write)."""
    get = container.ledger.repository.get
    cus = get(ids.customer_id(f"cus_{suffix}"))
    sub = get(ids.stripe_object_id(f"sub_{suffix}"))
    inv = get(ids.stripe_object_id(f"in_{suffix}"))
    pay = get(ids.stripe_object_id(f"pi_{suffix}"))
    customer_state = receipts.customer_receipt(cus)
    customer_state.pop("created_at")  # when the mirror was first needed, which depends on the order
    state = {
        "customer": customer_state,
        "plan": receipts.plan_receipt(get(ids.plan_id("price_1MowQULkdIwHu7ixraBm864M"))),
        "subscription": {**receipts.subscription_receipt(sub), "past_due_invoices": sub.past_due_invoice_ids},
        # Line ids derive from the invoice's own id: left out, like the ids `_without` generalises.
        "invoice": {
            **receipts.invoice_receipt(inv),
            "lines": [{k: v for k, v in line.items() if k != "line_id"} for line in inv.lines],
        },
        "payment": receipts.payment_receipt(pay),
    }
    return _without(state, suffix)


def _without(value: Any, suffix: str) -> Any:
    """The state with this lifecycle's own ids made generic, so two lifecycles compare."""
    if isinstance(value, dict):
        return {k: _without(v, suffix) for k, v in value.items()}
    if isinstance(value, list):
        return [_without(v, suffix) for v in value]
    if isinstance(value, str):
        for stripe_id in (f"cus_{suffix}", f"sub_{suffix}", f"in_{suffix}", f"pi_{suffix}"):
            value = value.replace(str(ids.stripe_object_id(stripe_id)), stripe_id[:3])
        return value.replace(str(ids.customer_id(f"cus_{suffix}")), "cus").replace(suffix, "X")
    return value


# ---------------------------------------------------------------------------- current API shapes


def current_subscription(
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
    """A subscription of API 2025-03-31 or later: its period is on its items."""
    obj = subscription(
        sub,
        cus,
        status=status,
        quantity=quantity,
        period=period,
        canceled_at=canceled_at,
        ended_at=ended_at,
        latest_invoice=latest_invoice,
    )
    del obj["current_period_start"], obj["current_period_end"]
    obj["billing_mode"] = {"type": "classic"}
    obj["items"]["data"][0].update(
        {"current_period_start": period[0], "current_period_end": period[1], "discounts": []}
    )
    return obj


def current_invoice(
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
) -> dict[str, Any]:
    """An invoice of API 2025-03-31 or later: no `subscription`, `payment_intent`, `charge`,
    `paid` nor `tax`; `parent`, `pricing` on its lines and `total_taxes` instead."""
    subtotal, tax = 4000, 800
    total = subtotal + tax
    tax_entry = {
        "amount": tax,
        "tax_behavior": "exclusive",
        "tax_rate_details": {"tax_rate": "txr_1MzS4RLkdIwHu7ixwvpZ9c2i"},
        "taxability_reason": "standard_rated",
        "taxable_amount": subtotal,
        "type": "tax_rate_details",
    }
    return {
        "id": inv,
        "object": "invoice",
        "account_country": "FR",
        "account_name": "Acme SAS",
        "amount_due": total,
        "amount_overpaid": 0,
        "amount_paid": amount_paid,
        "amount_remaining": total - amount_paid,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": attempt_count,
        "attempted": attempted,
        "auto_advance": status != "paid",
        "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
        "billing_reason": "subscription_cycle",
        "collection_method": "charge_automatically",
        "confirmation_secret": None,
        "created": created,
        "currency": "eur",
        "customer": cus,
        "customer_email": "jenny.rosen@example.com",
        "customer_name": "Jenny Rosen",
        "default_payment_method": None,
        "description": None,
        "discounts": [],
        "due_date": None,
        "effective_at": finalized_at,
        "ending_balance": 0 if finalized_at else None,
        "hosted_invoice_url": None,
        "invoice_pdf": None,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "lines": {
            "object": "list",
            "data": [
                {
                    "id": f"il_{inv[3:]}",
                    "object": "line_item",
                    "amount": subtotal,
                    "currency": "eur",
                    "description": "2 × Pro monthly (at €20.00 / month)",
                    "discount_amounts": [],
                    "discountable": True,
                    "discounts": [],
                    "invoice": inv,
                    "livemode": False,
                    "metadata": {},
                    "parent": {
                        "invoice_item_details": None,
                        "subscription_item_details": {
                            "invoice_item": None,
                            "proration": False,
                            "proration_details": {"credited_items": None},
                            "subscription": sub,
                            "subscription_item": f"si_{sub[4:]}",
                        },
                        "type": "subscription_item_details",
                    },
                    "period": {"start": TRIAL_END, "end": PERIOD_END},
                    "pretax_credit_amounts": [],
                    "pricing": {
                        "price_details": {"price": PRICE["id"], "product": PRICE["product"]},
                        "type": "price_details",
                        "unit_amount_decimal": "2000",
                    },
                    "quantity": 2,
                    "taxes": [tax_entry],
                }
            ],
            "has_more": False,
            "total_count": 1,
            "url": f"/v1/invoices/{inv}/lines",
        },
        "livemode": False,
        "metadata": {},
        "next_payment_attempt": None,
        "number": "8D7A1B2C-0001",
        "on_behalf_of": None,
        "parent": {
            "quote_details": None,
            "subscription_details": {"metadata": {}, "subscription": sub},
            "type": "subscription_details",
        },
        "period_end": TRIAL_END,
        "period_start": TRIAL_END,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": status,
        "status_transitions": {
            "finalized_at": finalized_at,
            "marked_uncollectible_at": None,
            "paid_at": paid_at,
            "voided_at": None,
        },
        "subtotal": subtotal,
        "subtotal_excluding_tax": subtotal,
        "test_clock": None,
        "total": total,
        "total_discount_amounts": [],
        "total_excluding_tax": subtotal,
        "total_pretax_credit_amounts": [],
        "total_taxes": [tax_entry],
        "webhooks_delivered_at": created,
    }


def current_payment_intent(
    pi: str, cus: str, *, created: int, succeeded: bool, amount: int = 4800
) -> dict[str, Any]:
    """A PaymentIntent of API 2025-03-31 or later: it does not name its invoice."""
    error = None
    if not succeeded:
        error = {
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "doc_url": "https://stripe.com/docs/error-codes/card-declined",
            "message": "Your card has insufficient funds.",
            "type": "card_error",
        }
    return {
        "id": pi,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": amount if succeeded else 0,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic",
        "client_secret": f"{pi}_secret_x",
        "confirmation_method": "automatic",
        "created": created,
        "currency": "eur",
        "customer": cus,
        "description": "Subscription update",
        "last_payment_error": error,
        "latest_charge": f"ch_{pi[3:]}",
        "livemode": False,
        "metadata": {},
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": "pm_1MzS4RLkdIwHu7ixl2wWHy8A",
        "payment_method_types": ["card"],
        "status": "succeeded" if succeeded else "requires_payment_method",
    }


def invoice_payment(
    inpay: str, inv: str, pi: str, *, created: int, paid_at: int, amount: int = 4800
) -> dict[str, Any]:
    """An `invoice_payment` (API 2025-03-31 and later): the only link from an invoice to the
    PaymentIntent that paid it."""
    return {
        "id": inpay,
        "object": "invoice_payment",
        "amount_paid": amount,
        "amount_requested": amount,
        "created": created,
        "currency": "eur",
        "invoice": inv,
        "is_default": True,
        "livemode": False,
        "payment": {"type": "payment_intent", "payment_intent": pi},
        "status": "paid",
        "status_transitions": {"canceled_at": None, "paid_at": paid_at},
    }


def current_lifecycle(suffix: str, *, failed_first: bool = False) -> list[dict[str, Any]]:
    """The history of `lifecycle` as a current API version delivers it, in Stripe's order: the
    customer, the subscription (trial, then active with quantity 2), the invoice finalized,
    [a declined charge: `payment_intent.payment_failed`, `invoice.payment_failed`,] the charge
    (`payment_intent.succeeded`, `invoice_payment.paid`, `invoice.paid`,
    `invoice.payment_succeeded`), and the subscription deleted."""
    cus, sub, inv, pi = f"cus_{suffix}", f"sub_{suffix}", f"in_{suffix}", f"pi_{suffix}"
    period = (TRIAL_END, PERIOD_END)
    finalized, failed, paid, deleted = (
        TRIAL_END + 3600,
        TRIAL_END + 7200,
        TRIAL_END + 3 * DAY,
        TRIAL_END + 10 * DAY,
    )
    attempts = 2 if failed_first else 1
    common = {"created": TRIAL_END, "finalized_at": finalized}
    paid_invoice = current_invoice(
        inv,
        cus,
        sub,
        status="paid",
        amount_paid=4800,
        attempt_count=attempts,
        attempted=True,
        paid_at=paid,
        **common,
    )

    def event(n: int, kind: str, created: int, obj: dict[str, Any]) -> dict[str, Any]:
        return envelope(f"evt_{suffix}_{n}", kind, created, obj, api_version=CURRENT_API)

    events = [
        event(1, "customer.created", T0, customer(cus)),
        event(
            2,
            "customer.subscription.created",
            SUB_START,
            current_subscription(sub, cus, status="trialing", quantity=1, period=(SUB_START, TRIAL_END)),
        ),
        event(
            3,
            "customer.subscription.updated",
            TRIAL_END,
            current_subscription(sub, cus, status="active", quantity=2, period=period, latest_invoice=inv),
        ),
        event(4, "invoice.finalized", finalized, current_invoice(inv, cus, sub, status="open", **common)),
    ]
    if failed_first:
        events += [
            event(
                5,
                "payment_intent.payment_failed",
                failed,
                current_payment_intent(pi, cus, created=finalized, succeeded=False),
            ),
            event(
                6,
                "invoice.payment_failed",
                failed,
                current_invoice(inv, cus, sub, status="open", attempt_count=1, attempted=True, **common),
            ),
        ]
    events += [
        event(
            7,
            "payment_intent.succeeded",
            paid,
            current_payment_intent(pi, cus, created=finalized, succeeded=True),
        ),
        event(
            8,
            "invoice_payment.paid",
            paid,
            invoice_payment(f"inpay_{suffix}", inv, pi, created=finalized, paid_at=paid),
        ),
        event(9, "invoice.paid", paid, paid_invoice),
        event(10, "invoice.payment_succeeded", paid, copy.deepcopy(paid_invoice)),
        event(
            11,
            "customer.subscription.deleted",
            deleted,
            current_subscription(
                sub, cus, status="canceled", quantity=2, period=period, canceled_at=deleted, ended_at=deleted
            ),
        ),
    ]
    return events
