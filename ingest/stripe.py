"""Stripe webhooks: verified with the `stripe` library, read into typed snapshots.

`verify` checks `Stripe-Signature` (`t=…,v1=…`, HMAC-SHA256 of `t.body` with the endpoint
secret) and its timestamp against the tolerance, exactly as Stripe's own library does, then
reads the event. A Stripe event carries a snapshot of one object (`data.object`) as it was
when the event was created; the snapshot classes below keep the fields the ledger reconciles,
with amounts as Stripe sends them: integers of minor units. Reading an object that does not
have the expected shape raises `UnreadableObject`; the event is then kept verbatim only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson
import stripe

# Stripe event types the ledger translates (SPEC section 5); others are kept verbatim only.
CUSTOMER_TYPES = frozenset({"customer.created", "customer.updated", "customer.deleted"})
SUBSCRIPTION_TYPES = frozenset(
    {"customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted"}
)
INVOICE_TYPES = frozenset(
    {
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "invoice.payment_failed",
        "invoice.payment_succeeded",
        "invoice.voided",
        "invoice.marked_uncollectible",
    }
)
PAYMENT_INTENT_TYPES = frozenset({"payment_intent.succeeded", "payment_intent.payment_failed"})
CHARGE_TYPES = frozenset({"charge.refunded"})


class BadSignature(Exception):
    """The signature does not match, is missing, or its timestamp is outside the tolerance."""


class UnreadableEvent(Exception):
    """Signed, but not a Stripe event (not JSON, or no id, type, created or data.object)."""


class UnreadableObject(Exception):
    """The event's object lacks a field the ledger needs, or has it in another type."""


@dataclass(frozen=True)
class StripeEvent:
    id: str
    type: str
    created: int  # unix seconds, as Stripe sends it
    object: dict[str, Any]
    payload: dict[str, Any]  # the whole event, verbatim

    @property
    def created_at(self) -> datetime:
        return moment(self.created)

    @property
    def customer_ref(self) -> str | None:
        """The Stripe customer the event is about, if any."""
        if self.object.get("object") == "customer":
            return _opt_str(self.object, "id")
        customer = self.object.get("customer")
        if isinstance(customer, dict):
            customer = customer.get("id")
        return customer if isinstance(customer, str) else None


def verify(payload: bytes, signature: str | None, secret: str, tolerance: int) -> StripeEvent:
    try:
        stripe.WebhookSignature.verify_header(payload, signature, secret, tolerance)
    except stripe.SignatureVerificationError as refused:
        raise BadSignature(str(refused).split(";")[0]) from None
    except UnicodeDecodeError:
        raise BadSignature("the body is not UTF-8, so it cannot be what Stripe signed") from None
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise UnreadableEvent("the body is not valid JSON") from None
    if not isinstance(document, dict) or document.get("object") != "event":
        raise UnreadableEvent("the body is not a Stripe event (object: event)")
    data = document.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    event_id, kind, created = document.get("id"), document.get("type"), document.get("created")
    if not (isinstance(event_id, str) and event_id and isinstance(kind, str) and isinstance(obj, dict)):
        raise UnreadableEvent("a Stripe event has an id, a type and data.object")
    if isinstance(created, bool) or not isinstance(created, int):
        raise UnreadableEvent("a Stripe event has an integer created timestamp")
    return StripeEvent(event_id, kind, created, obj, document)


# ---------------------------------------------------------------------------- field readers


def moment(unix: int) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


def _str(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if isinstance(value, dict):  # an expanded object
        value = value.get("id")
    if not isinstance(value, str) or not value:
        raise UnreadableObject(f"{obj.get('object', 'object')}.{name} is missing")
    return value


def _opt_str(obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _int(obj: dict[str, Any], name: str, default: int | None = None) -> int:
    value = obj.get(name, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int):
        raise UnreadableObject(f"{obj.get('object', 'object')}.{name} is not an integer")
    return value


def _opt_time(obj: dict[str, Any], name: str) -> datetime | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise UnreadableObject(f"{obj.get('object', 'object')}.{name} is not a unix timestamp")
    return moment(value)


def _currency(obj: dict[str, Any]) -> str:
    return _str(obj, "currency").upper()


# ---------------------------------------------------------------------------- snapshots


@dataclass(frozen=True)
class CustomerSnapshot:
    id: str
    email: str | None
    name: str | None
    currency: str | None
    metadata: dict[str, Any]
    deleted: bool
    created: datetime | None

    @classmethod
    def read(cls, obj: dict[str, Any]) -> CustomerSnapshot:
        metadata = obj.get("metadata") or {}
        currency = _opt_str(obj, "currency")
        return cls(
            id=_str(obj, "id"),
            email=_opt_str(obj, "email"),
            name=_opt_str(obj, "name"),
            currency=currency.upper() if currency else None,
            metadata=dict(metadata) if isinstance(metadata, dict) else {},
            deleted=obj.get("deleted") is True,
            created=_opt_time(obj, "created"),
        )


@dataclass(frozen=True)
class PriceSnapshot:
    id: str
    name: str
    currency: str
    unit_amount: int
    interval: str
    interval_count: int

    @classmethod
    def read(cls, price: dict[str, Any]) -> PriceSnapshot:
        recurring = price.get("recurring")
        if not isinstance(recurring, dict):
            raise UnreadableObject("the subscription's price is not recurring")
        return cls(
            id=_str(price, "id"),
            name=_opt_str(price, "nickname") or _opt_str(price, "product") or _str(price, "id"),
            currency=_currency(price),
            unit_amount=_int(price, "unit_amount", 0),
            interval=_str(recurring, "interval"),
            interval_count=_int(recurring, "interval_count", 1),
        )


@dataclass(frozen=True)
class SubscriptionSnapshot:
    id: str
    customer: str
    status: str
    price: PriceSnapshot
    quantity: int
    start_date: datetime
    trial_end: datetime | None
    current_period_start: datetime | None
    cancel_at_period_end: bool
    canceled_at: datetime | None
    ended_at: datetime | None

    @classmethod
    def read(cls, obj: dict[str, Any]) -> SubscriptionSnapshot:
        items = obj.get("items")
        data = items.get("data") if isinstance(items, dict) else None
        if not isinstance(data, list) or not data or not isinstance(data[0], dict):
            raise UnreadableObject("subscription.items.data is empty")
        item = data[0]
        price = item.get("price") or item.get("plan")
        if not isinstance(price, dict):
            raise UnreadableObject("subscription item has no price")
        # Newer API versions keep the period on the item, older ones on the subscription.
        period_start = _opt_time(obj, "current_period_start") or _opt_time(item, "current_period_start")
        start = _opt_time(obj, "start_date") or _opt_time(obj, "created")
        if start is None:
            raise UnreadableObject("subscription.start_date is missing")
        return cls(
            id=_str(obj, "id"),
            customer=_str(obj, "customer"),
            status=_str(obj, "status"),
            price=PriceSnapshot.read(price),
            quantity=_int(item, "quantity", _int(obj, "quantity", 1)),
            start_date=start,
            trial_end=_opt_time(obj, "trial_end"),
            current_period_start=period_start,
            cancel_at_period_end=obj.get("cancel_at_period_end") is True,
            canceled_at=_opt_time(obj, "canceled_at"),
            ended_at=_opt_time(obj, "ended_at"),
        )


@dataclass(frozen=True)
class InvoiceLineSnapshot:
    description: str
    quantity: int
    unit_amount: int
    amount: int


@dataclass(frozen=True)
class InvoiceSnapshot:
    id: str
    customer: str
    subscription: str | None
    status: str
    number: str | None
    currency: str
    lines: list[InvoiceLineSnapshot]
    subtotal: int
    tax: int
    total: int
    amount_due: int
    amount_paid: int
    attempt_count: int
    attempted: bool
    payment_intent: str | None
    created: datetime
    due_date: date | None
    finalized_at: datetime | None
    paid_at: datetime | None
    voided_at: datetime | None
    marked_uncollectible_at: datetime | None

    @classmethod
    def read(cls, obj: dict[str, Any]) -> InvoiceSnapshot:
        transitions = obj.get("status_transitions") or {}
        lines_obj = obj.get("lines") or {}
        lines = []
        for line in lines_obj.get("data", []) if isinstance(lines_obj, dict) else []:
            if not isinstance(line, dict):
                continue
            amount = _int(line, "amount", 0)
            quantity = _int(line, "quantity", 1) or 1
            price = line.get("price") if isinstance(line.get("price"), dict) else {}
            unit = _int(price, "unit_amount", 0) if price else 0
            if unit * quantity != amount:
                quantity, unit = 1, amount
            lines.append(InvoiceLineSnapshot(_opt_str(line, "description") or "", quantity, unit, amount))
        taxes = obj.get("total_taxes")
        tax = obj.get("tax")
        if tax is None and isinstance(taxes, list):
            tax = sum(_int(t, "amount", 0) for t in taxes if isinstance(t, dict))
        created = _opt_time(obj, "created")
        if created is None:
            raise UnreadableObject("invoice.created is missing")
        due = _opt_time(obj, "due_date")
        payment_intent = _opt_str(obj, "payment_intent")
        if payment_intent is None:  # newer API versions list payments instead
            payments = obj.get("payments")
            for entry in payments.get("data", []) if isinstance(payments, dict) else []:
                payment = entry.get("payment") if isinstance(entry, dict) else None
                if isinstance(payment, dict) and _opt_str(payment, "payment_intent"):
                    payment_intent = _opt_str(payment, "payment_intent")
                    break
        total = _int(obj, "total", 0)
        return cls(
            id=_str(obj, "id"),
            customer=_str(obj, "customer"),
            subscription=_opt_str(obj, "subscription"),
            status=_str(obj, "status"),
            number=_opt_str(obj, "number"),
            currency=_currency(obj),
            lines=lines,
            subtotal=_int(obj, "subtotal_excluding_tax", None)
            if obj.get("subtotal_excluding_tax") is not None
            else _int(obj, "subtotal", 0),
            tax=_int({"tax": tax}, "tax", 0),
            total=total,
            amount_due=_int(obj, "amount_due", total),
            amount_paid=_int(obj, "amount_paid", 0),
            attempt_count=_int(obj, "attempt_count", 0),
            attempted=obj.get("attempted") is True,
            payment_intent=payment_intent,
            created=created,
            due_date=due.date() if due else None,
            finalized_at=_opt_time(transitions, "finalized_at"),
            paid_at=_opt_time(transitions, "paid_at"),
            voided_at=_opt_time(transitions, "voided_at"),
            marked_uncollectible_at=_opt_time(transitions, "marked_uncollectible_at"),
        )


@dataclass(frozen=True)
class PaymentIntentSnapshot:
    id: str
    customer: str | None
    invoice: str | None
    amount: int
    currency: str
    status: str
    failure_code: str | None
    failure_message: str | None
    created: datetime

    @classmethod
    def read(cls, obj: dict[str, Any]) -> PaymentIntentSnapshot:
        error = obj.get("last_payment_error") if isinstance(obj.get("last_payment_error"), dict) else {}
        created = _opt_time(obj, "created")
        if created is None:
            raise UnreadableObject("payment_intent.created is missing")
        return cls(
            id=_str(obj, "id"),
            customer=_opt_str(obj, "customer"),
            invoice=_opt_str(obj, "invoice"),
            amount=_int(obj, "amount"),
            currency=_currency(obj),
            status=_str(obj, "status"),
            failure_code=_opt_str(error, "decline_code") or _opt_str(error, "code") if error else None,
            failure_message=_opt_str(error, "message") if error else None,
            created=created,
        )


@dataclass(frozen=True)
class ChargeSnapshot:
    id: str
    customer: str | None
    payment_intent: str | None
    invoice: str | None
    amount: int
    amount_refunded: int
    currency: str
    created: datetime

    @classmethod
    def read(cls, obj: dict[str, Any]) -> ChargeSnapshot:
        created = _opt_time(obj, "created")
        if created is None:
            raise UnreadableObject("charge.created is missing")
        return cls(
            id=_str(obj, "id"),
            customer=_opt_str(obj, "customer"),
            payment_intent=_opt_str(obj, "payment_intent"),
            invoice=_opt_str(obj, "invoice"),
            amount=_int(obj, "amount"),
            amount_refunded=_int(obj, "amount_refunded", 0),
            currency=_currency(obj),
            created=created,
        )
