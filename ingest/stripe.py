"""Stripe webhooks: verified with the `stripe` library, read into typed snapshots.

`verify` checks `Stripe-Signature` (`t=…,v1=…`, HMAC-SHA256 of `t.body` with the endpoint
secret) and its timestamp against the tolerance, exactly as Stripe's own library does, then
reads the event. A Stripe event carries a snapshot of one object (`data.object`) as it was
when the event was created; the snapshot classes below keep the fields the ledger reconciles,
with amounts as Stripe sends them: integers of minor units. Reading an object that does not
have the expected shape raises `UnreadableObject`; the event is then kept verbatim only.

Objects of every API version Stripe still sends are read. Since 2025-03-31 (basil) an invoice
names its subscription under `parent.subscription_details.subscription` (before: `subscription`)
and no longer names its PaymentIntent, nor a PaymentIntent or a charge its invoice: only an
`invoice_payment` links them. A subscription's period is on its items (before: on itself).

Values the ledger could not hold are refused, not kept: an amount beyond 10^15 minor units, a
quantity beyond 10^9, a charge per period (amount × quantity) beyond 10^15 raise `BeyondLimits`;
a timestamp no calendar date can hold raises `TimeOutOfRange`. Which moments must also lie in
the business-time window is for the use case to check (`occurred` and `scheduled` list them),
against the ledger's now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
import stripe

from domain.errors import InvalidValue, TimeOutOfRange

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
INVOICE_PAYMENT_TYPES = frozenset({"invoice_payment.paid"})

MAX_AMOUNT = 10**15  # minor units, as for commands (SPEC section 5)
MAX_QUANTITY = 10**9
MAX_INTERVAL_COUNT = 36  # Stripe bills at most every three years


class BadSignature(Exception):
    """The signature does not match, is missing, or its timestamp is outside the tolerance."""


class UnreadableEvent(Exception):
    """Signed, but not a Stripe event (not JSON, or no id, type, created or data.object)."""


class UnreadableObject(Exception):
    """The event's object lacks a field the ledger needs, or has it in another type."""


class BeyondLimits(InvalidValue):
    """A value beyond what the ledger holds (an amount over 10^15 minor units, a quantity over
    10^9): refused like the same value in a command, and nothing of the event is recorded."""


@dataclass(frozen=True)
class StripeEvent:
    id: str
    type: str
    created: int  # unix seconds, as Stripe sends it
    object: dict[str, Any]
    payload: dict[str, Any]  # the whole event, verbatim

    @property
    def created_at(self) -> datetime:
        return moment(self.created, "created")

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


_FIRST_UNIX = int(datetime(1, 1, 2, tzinfo=UTC).timestamp())
_LAST_UNIX = int(datetime(9999, 12, 30, tzinfo=UTC).timestamp())


def moment(unix: int, field: str) -> datetime:
    """A unix timestamp as a UTC datetime; TimeOutOfRange (naming `field`) if no date can hold it."""
    if not _FIRST_UNIX <= unix <= _LAST_UNIX:
        raise TimeOutOfRange(f"{field} {unix} is not a time the ledger can hold", field=field)
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


def _bounded(obj: dict[str, Any], name: str, default: int | None, low: int, high: int, what: str) -> int:
    """An integer in [low, high]; BeyondLimits otherwise. A JSON reader turns an integer beyond
    64 bits into a float: that is refused as beyond the limits too, never misread."""
    value = obj.get(name)
    if isinstance(value, float) or (isinstance(value, int) and not low <= value <= high):
        field = f"{obj.get('object', 'object')}.{name}"
        raise BeyondLimits(f"{field} is {what}, not {value}", field=field)
    return _int(obj, name, default)


def _amount(obj: dict[str, Any], name: str, default: int | None = None) -> int:
    """An amount of minor units, within ±10^15 (Stripe's credits may be negative)."""
    return _bounded(obj, name, default, -MAX_AMOUNT, MAX_AMOUNT, "an integer of at most 10^15 minor units")


def _quantity(obj: dict[str, Any], name: str, default: int | None = None) -> int:
    return _bounded(obj, name, default, 0, MAX_QUANTITY, "an integer between 0 and 10^9")


def _check_charge(unit_amount: int, quantity: int, field: str) -> None:
    """What a quantity costs per period is money too: at most 10^15 minor units."""
    if abs(unit_amount) * quantity > MAX_AMOUNT:
        raise BeyondLimits(
            f"{field}: {unit_amount} × {quantity} exceeds 10^15 minor units per period", field=field
        )


def _opt_time(obj: dict[str, Any], name: str, owner: str | None = None) -> datetime | None:
    value = obj.get(name)
    if value is None:
        return None
    field = f"{owner or obj.get('object', 'object')}.{name}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise UnreadableObject(f"{field} is not a unix timestamp")
    return moment(value, field)


def _currency(obj: dict[str, Any]) -> str:
    return _str(obj, "currency").upper()


Moments = dict[str, datetime | None]


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

    def occurred(self) -> Moments:
        return {"customer.created": self.created}

    def scheduled(self) -> Moments:
        return {}


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
        interval_count = _int(recurring, "interval_count", 1)
        if not 1 <= interval_count <= MAX_INTERVAL_COUNT:
            raise BeyondLimits(
                f"price.recurring.interval_count is between 1 and {MAX_INTERVAL_COUNT}, not {interval_count}",
                field="price.recurring.interval_count",
            )
        return cls(
            id=_str(price, "id"),
            name=_opt_str(price, "nickname") or _opt_str(price, "product") or _str(price, "id"),
            currency=_currency(price),
            unit_amount=_amount(price, "unit_amount", 0),
            interval=_str(recurring, "interval"),
            interval_count=interval_count,
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
        period_start = _opt_time(obj, "current_period_start") or _opt_time(
            item, "current_period_start", "subscription.items.data[0]"
        )
        start = _opt_time(obj, "start_date") or _opt_time(obj, "created")
        if start is None:
            raise UnreadableObject("subscription.start_date is missing")
        snapshot = PriceSnapshot.read(price)
        quantity = _quantity(item, "quantity", _quantity(obj, "quantity", 1))
        _check_charge(snapshot.unit_amount, quantity, "subscription.items.data[0]")
        return cls(
            id=_str(obj, "id"),
            customer=_str(obj, "customer"),
            status=_str(obj, "status"),
            price=snapshot,
            quantity=quantity,
            start_date=start,
            trial_end=_opt_time(obj, "trial_end"),
            current_period_start=period_start,
            cancel_at_period_end=obj.get("cancel_at_period_end") is True,
            canceled_at=_opt_time(obj, "canceled_at"),
            ended_at=_opt_time(obj, "ended_at"),
        )

    def occurred(self) -> Moments:
        """The moments the ledger records as something that happened."""
        return {
            "subscription.start_date": self.start_date,
            "subscription.current_period_start": self.current_period_start,
            "subscription.canceled_at": self.canceled_at,
            "subscription.ended_at": self.ended_at,
        }

    def scheduled(self) -> Moments:
        """Moments that may still be to come and that the ledger keeps (a trial's end; a trial
        that converts is recorded as ended at the earliest of it and the event)."""
        return {"subscription.trial_end": self.trial_end}


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
    # Before 2025-03-31 an invoice always has a `payment_intent` field (null when it was paid
    # without one); since then it has none, and only an `invoice_payment` names the payment.
    names_its_payment_intent: bool
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
        lines = (
            [_line(line) for line in lines_obj.get("data", []) if isinstance(line, dict)]
            if isinstance(lines_obj, dict)
            else []
        )
        taxes = obj.get("total_taxes")
        tax = obj.get("tax")
        if tax is None and isinstance(taxes, list):
            tax = sum(_amount(t, "amount", 0) for t in taxes if isinstance(t, dict))
        created = _opt_time(obj, "created")
        if created is None:
            raise UnreadableObject("invoice.created is missing")
        due = _opt_time(obj, "due_date")
        payment_intent = _opt_str(obj, "payment_intent")
        if payment_intent is None:  # newer API versions may include the payments
            payments = obj.get("payments")
            for entry in payments.get("data", []) if isinstance(payments, dict) else []:
                payment = entry.get("payment") if isinstance(entry, dict) else None
                if isinstance(payment, dict) and _opt_str(payment, "payment_intent"):
                    payment_intent = _opt_str(payment, "payment_intent")
                    break
        total = _amount(obj, "total", 0)
        return cls(
            id=_str(obj, "id"),
            customer=_str(obj, "customer"),
            subscription=_opt_str(obj, "subscription") or _parent_subscription(obj),
            status=_str(obj, "status"),
            names_its_payment_intent="payment_intent" in obj,
            number=_opt_str(obj, "number"),
            currency=_currency(obj),
            lines=lines,
            subtotal=_amount(obj, "subtotal_excluding_tax", None)
            if obj.get("subtotal_excluding_tax") is not None
            else _amount(obj, "subtotal", 0),
            tax=_amount({"object": "invoice", "tax": tax}, "tax", 0),
            total=total,
            amount_due=_amount(obj, "amount_due", total),
            amount_paid=_amount(obj, "amount_paid", 0),
            attempt_count=_quantity(obj, "attempt_count", 0),
            attempted=obj.get("attempted") is True,
            payment_intent=payment_intent,
            created=created,
            due_date=due.date() if due else None,
            finalized_at=_opt_time(transitions, "finalized_at", "invoice.status_transitions"),
            paid_at=_opt_time(transitions, "paid_at", "invoice.status_transitions"),
            voided_at=_opt_time(transitions, "voided_at", "invoice.status_transitions"),
            marked_uncollectible_at=_opt_time(
                transitions, "marked_uncollectible_at", "invoice.status_transitions"
            ),
        )

    def occurred(self) -> Moments:
        return {
            "invoice.created": self.created,
            "invoice.status_transitions.finalized_at": self.finalized_at,
            "invoice.status_transitions.paid_at": self.paid_at,
            "invoice.status_transitions.voided_at": self.voided_at,
            "invoice.status_transitions.marked_uncollectible_at": self.marked_uncollectible_at,
        }

    def scheduled(self) -> Moments:
        due = self.due_date
        return {"invoice.due_date": datetime(due.year, due.month, due.day, tzinfo=UTC) if due else None}


def _line(line: dict[str, Any]) -> InvoiceLineSnapshot:
    """A line's unit amount is its price's (`price`, or since 2025-03-31 `pricing`); a line
    whose figures do not multiply out is kept as one unit of its amount."""
    amount = _amount(line, "amount", 0)
    quantity = _quantity(line, "quantity", 1) or 1
    unit = 0
    price = line.get("price")
    pricing = line.get("pricing")
    if isinstance(price, dict):
        unit = _amount(price, "unit_amount", 0)
    elif isinstance(pricing, dict) and isinstance(pricing.get("unit_amount_decimal"), str):
        try:
            exact = Decimal(pricing["unit_amount_decimal"])
        except InvalidOperation:
            exact = Decimal(-1)
        if exact == exact.to_integral_value() and 0 <= exact <= MAX_AMOUNT:
            unit = int(exact)
    if unit * quantity != amount:
        quantity, unit = 1, amount
    return InvoiceLineSnapshot(_opt_str(line, "description") or "", quantity, unit, amount)


def _parent_subscription(invoice: dict[str, Any]) -> str | None:
    """The subscription of an invoice of API 2025-03-31 or later."""
    parent = invoice.get("parent")
    details = parent.get("subscription_details") if isinstance(parent, dict) else None
    return _opt_str(details, "subscription") if isinstance(details, dict) else None


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
            invoice=_opt_str(obj, "invoice"),  # only before 2025-03-31
            amount=_amount(obj, "amount"),
            currency=_currency(obj),
            status=_str(obj, "status"),
            failure_code=_opt_str(error, "decline_code") or _opt_str(error, "code") if error else None,
            failure_message=_opt_str(error, "message") if error else None,
            created=created,
        )

    def occurred(self) -> Moments:
        return {"payment_intent.created": self.created}

    def scheduled(self) -> Moments:
        return {}


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
            invoice=_opt_str(obj, "invoice"),  # only before 2025-03-31
            amount=_amount(obj, "amount"),
            amount_refunded=_amount(obj, "amount_refunded", 0),
            currency=_currency(obj),
            created=created,
        )

    def occurred(self) -> Moments:
        return {"charge.created": self.created}

    def scheduled(self) -> Moments:
        return {}


@dataclass(frozen=True)
class InvoicePaymentSnapshot:
    """An `invoice_payment` (API 2025-03-31 and later): the link between an invoice and the
    payment that paid it, a PaymentIntent (or a lone charge, or a payment record)."""

    id: str
    invoice: str
    payment: str | None  # pi_..., ch_... or the payment record's id
    status: str
    amount_paid: int
    currency: str
    created: datetime
    paid_at: datetime | None

    @classmethod
    def read(cls, obj: dict[str, Any]) -> InvoicePaymentSnapshot:
        created = _opt_time(obj, "created")
        if created is None:
            raise UnreadableObject("invoice_payment.created is missing")
        found = obj.get("payment")
        payment: dict[str, Any] = found if isinstance(found, dict) else {}
        candidates = [  # by `payment.type`; a preview version keeps the ids on the object itself
            _opt_str(payment, "payment_intent"),
            _opt_str(payment, "charge"),
            _opt_str(payment, "payment_record"),
            _opt_str(obj, "payment_intent"),
            _opt_str(obj, "charge"),
        ]
        reference = next((c for c in candidates if c is not None), None)
        transitions = obj.get("status_transitions") or {}
        amount_paid = obj.get("amount_paid")
        return cls(
            id=_str(obj, "id"),
            invoice=_str(obj, "invoice"),
            payment=reference,
            status=_str(obj, "status"),
            amount_paid=_amount(obj, "amount_paid" if amount_paid is not None else "amount_requested", 0),
            currency=_currency(obj),
            created=created,
            paid_at=_opt_time(transitions, "paid_at", "invoice_payment.status_transitions"),
        )

    def occurred(self) -> Moments:
        return {
            "invoice_payment.created": self.created,
            "invoice_payment.status_transitions.paid_at": self.paid_at,
        }

    def scheduled(self) -> Moments:
        return {}
