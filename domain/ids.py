"""Deterministic ids: uuid5 from natural keys, so a retried command lands on the same aggregate."""

from __future__ import annotations

import hashlib
import random
from datetime import date
from functools import lru_cache
from uuid import UUID, SafeUUID

LEDGER_NAMESPACE = UUID("6f1c1f0e-9a57-4b1e-8f43-3c2b1f4f6a10")

_NAMESPACE_BYTES = LEDGER_NAMESPACE.bytes
_VERSION_AND_VARIANT_BITS = (0xF000 << 64) | (0xC000 << 48)
_KEEP = ~_VERSION_AND_VARIANT_BITS & ((1 << 128) - 1)
_VERSION_5_RFC_4122 = (5 << 76) | (0x8000 << 48)
_new, _set = object.__new__, object.__setattr__


def uuid_of_int(value: int) -> UUID:
    """`UUID(int=value)`, set as `UUID.__init__` sets it, without its argument checks (for ids
    made or carried by the ledger itself, where the checks cost more than the rest)."""
    made = _new(UUID)
    _set(made, "int", value)
    _set(made, "is_safe", SafeUUID.unknown)
    return made


def _uuid5(name: str) -> UUID:
    """`uuid.uuid5(LEDGER_NAMESPACE, name)`, computed without the standard library's detour
    through bytes, and set as `UUID.__init__` would set it without its argument checks (ingest
    derives one per event: this is a third of its former cost)."""
    digest = hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()  # noqa: S324 - RFC 4122 v5 is SHA-1
    return uuid_of_int((int.from_bytes(digest[:16]) & _KEEP) | _VERSION_5_RFC_4122)


def customer_id(external_id: str) -> UUID:
    return _uuid5(f"customer:{external_id}")


@lru_cache(maxsize=1024)
def plan_id(code: str) -> UUID:
    """(The last ones derived are kept: a ledger has a few plans, and each bill looks its plan
    up; bounded, as codes asked for may come from anyone.)"""
    return _uuid5(f"plan:{code}")


def idempotency_record_id(scope: str, key: str) -> UUID:
    return _uuid5(f"idempotency:{scope}:{key}")


def usage_record_id(source: str, event_id: str) -> UUID:
    return _uuid5(f"usage:{source}:{event_id}")


def ingested_event_id(source: str, event_id: str) -> UUID:
    """The stream that answers for the CloudEvent (source, id): its UsageRecord for
    `usage.recorded`, an ingest record otherwise. One id space, so a key is used once."""
    return usage_record_id(source, event_id)


def stripe_event_id(event_id: str) -> UUID:
    """The stream keeping a Stripe event verbatim; also its deduplication key."""
    return _uuid5(f"stripe-event:{event_id}")


def stripe_object_id(stripe_id: str) -> UUID:
    """The ledger aggregate mirroring a Stripe object (sub_, in_, pi_, ch_...)."""
    return _uuid5(f"stripe:{stripe_id}")


def stripe_sync_id(stripe_id: str) -> UUID:
    """The record of the newest snapshot of a Stripe object applied to the ledger."""
    return _uuid5(f"stripe-sync:{stripe_id}")


def onboarding_id(external_id: str) -> UUID:
    """The record of a customer's onboarding (SPEC 10): one per external_id."""
    return _uuid5(f"onboarding:{external_id}")


def onboarding_subscription_id(external_id: str) -> UUID:
    return _uuid5(f"onboarding-subscription:{external_id}")


def onboarding_key_id(external_id: str) -> UUID:
    """The id of the ingest key an onboarding issues: whoever stores it first, stores it once."""
    return _uuid5(f"onboarding-key:{external_id}")


def alert_id(alert_type: str, subject: str, occurrence: str = "") -> UUID:
    return _uuid5(f"alert:{alert_type}:{subject}:{occurrence}")


INVOICE_NUMBERING_ID = _uuid5("invoice-numbering")


def clock_tick_id(day: date) -> UUID:
    return _uuid5(f"clock:{day.isoformat()}")


TEST_CLOCK_ID = _uuid5("test-clock")
# The key of the daily clock's timer: the next UTC midnight to record as a ClockTick.
DAILY_CLOCK_TIMER_ID = _uuid5("daily-clock")


def coupon_id(code: str) -> UUID:
    return _uuid5(f"coupon:{code}")


CREDIT_NOTE_NUMBERING_ID = _uuid5("credit-note-numbering")


def subscription_invoice_id(subscription_id: UUID, period_start: str, reason: str = "cycle") -> UUID:
    """The invoice a subscription gets for one period (billed once, however often the clock runs
    or the log is replayed); `reason` tells apart the other invoices a subscription can get at
    one moment (an immediate proration, the final invoice)."""
    suffix = "" if reason == "cycle" else f":{reason}"
    return _uuid5(f"subscription-invoice:{subscription_id}:{period_start}{suffix}")


def subscription_item_id(subscription_id: UUID, sequence: int) -> UUID:
    """The `sequence`-th add-on item ever added to a subscription (an add-on removed and bought
    again is a new item)."""
    return _uuid5(f"subscription-item:{subscription_id}:{sequence}")


def invoice_line_id(invoice_id: UUID, index: int) -> UUID:
    """A hand-made line's id: its invoice and its place on it."""
    return _uuid5(f"invoice-line:{invoice_id}:{index}")


def credit_note_id(number: str) -> UUID:
    """A credit note's id: its gapless number, unique in its sequence."""
    return _uuid5(f"credit-note:{number}")


def collection_attempt_id(invoice_id: UUID, attempt: int) -> UUID:
    """The payment of the n-th attempt to collect an invoice automatically: starting the same
    attempt twice (two policy processes, a crash before the checkpoint) finds the first."""
    return _uuid5(f"collection:{invoice_id}:{attempt}")


def backend_payment_reference_id(external_payment_id: str) -> UUID:
    """Where the payment backend's id of a payment leads to the ledger's payment."""
    return _uuid5(f"payment-backend:{external_payment_id}")


def webhook_message_id(stream_id: UUID, version: int) -> UUID:
    """The outgoing webhook message announcing one stored event (its `webhook-id`)."""
    return _uuid5(f"webhook-message:{stream_id}:{version}")


def webhook_delivery_id(endpoint_id: UUID, message_id: str) -> UUID:
    return _uuid5(f"webhook-delivery:{endpoint_id}:{message_id}")


_VERSION_4_RFC_4122 = (4 << 76) | (0x8000 << 48)


def correlation_id() -> UUID:
    """A random (version 4) UUID drawn from the interpreter's generator rather than the system's:
    a correlation id must be unique, not unguessable, and `uuid4()` asks the kernel (one call per
    request, which also lets other threads take the interpreter lock). The generator is seeded
    from the system's at start and again in a forked child."""
    return uuid_of_int((random.getrandbits(128) & _KEEP) | _VERSION_4_RFC_4122)
