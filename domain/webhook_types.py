"""The catalogue of outgoing webhook types (SPEC section 8) and which ledger events they announce.

A ledger event maps to at most one webhook type."""

from __future__ import annotations

from domain.errors import InvalidValue

ALL_TYPES = "*"  # an endpoint that wants every type, present and future

WEBHOOK_TYPES = (
    "customer.created",
    "customer.updated",
    "subscription.created",
    "subscription.updated",
    "subscription.canceled",
    "invoice.created",
    "invoice.finalized",
    "invoice.paid",
    "invoice.voided",
    "invoice.marked_uncollectible",
    "credit_note.created",
    "payment.succeeded",
    "payment.failed",
    "payment.refunded",
    "alert.raised",
    "alert.resolved",
    "dunning.step",
)

LEDGER_EVENT_TYPES: dict[str, str] = {
    "Customer.Registered": "customer.created",
    "Customer.Updated": "customer.updated",
    # Archiving changes the customer as the API shows it (`archived: true`); SPEC 8 has no
    # customer.deleted, and an archived customer is kept, not deleted.
    "Customer.Archived": "customer.updated",
    "Subscription.Started": "subscription.created",
    "Subscription.TrialEnded": "subscription.updated",
    "Subscription.Changed": "subscription.updated",
    "Subscription.Renewed": "subscription.updated",
    "Subscription.PastDue": "subscription.updated",
    "Subscription.Recovered": "subscription.updated",
    "Subscription.CancellationScheduled": "subscription.updated",
    "Subscription.CancellationWithdrawn": "subscription.updated",
    "Subscription.ItemAdded": "subscription.updated",
    "Subscription.ItemQuantityChanged": "subscription.updated",
    "Subscription.ItemRemoved": "subscription.updated",
    "Subscription.Canceled": "subscription.canceled",
    "Invoice.Drafted": "invoice.created",
    "Invoice.Finalized": "invoice.finalized",
    "Invoice.Paid": "invoice.paid",
    "Invoice.Voided": "invoice.voided",
    "Invoice.MarkedUncollectible": "invoice.marked_uncollectible",
    "CreditNote.Issued": "credit_note.created",
    "Payment.Succeeded": "payment.succeeded",
    "Payment.Failed": "payment.failed",
    "Payment.Refunded": "payment.refunded",
    "Alert.Raised": "alert.raised",
    "Alert.Reopened": "alert.raised",  # the condition is back: for a subscriber, raised again
    "Alert.Resolved": "alert.resolved",
    "Invoice.DunningStepTaken": "dunning.step",  # a retry, a reminder or the final action
}


def webhook_type_of(ledger_event_type: str) -> str | None:
    """The webhook type announcing a stored event, or None when no subscriber is told of it."""
    return LEDGER_EVENT_TYPES.get(ledger_event_type)


def check_event_types(event_types: list[str]) -> list[str]:
    """An endpoint's subscription: at least one type, each from the catalogue (or `*`), no
    repeats. Answers the list in the order given."""
    if not event_types:
        raise InvalidValue("name at least one event type (or '*' for all)", field="event_types")
    unknown = [t for t in event_types if t != ALL_TYPES and t not in WEBHOOK_TYPES]
    if unknown:
        raise InvalidValue(
            f"unknown event types {unknown}; known: {', '.join(WEBHOOK_TYPES)} or '*'", field="event_types"
        )
    if len(set(event_types)) != len(event_types):
        raise InvalidValue("each event type once", field="event_types")
    return list(event_types)


def subscribes(event_types: list[str], webhook_type: str) -> bool:
    return ALL_TYPES in event_types or webhook_type in event_types
