"""The body of an outgoing webhook: `{type, timestamp, data}` (Standard Webhooks).

`timestamp` is when the event occurred (business time; the `webhook-timestamp` header is when it
was sent). `data` is the resource as the write that recorded the event answered it: the receipt of
the aggregate as that write left it, plus the event's `position` (pass it as `min_position` to read
the resource's derived figures, such as a customer's status or MRR, through the API). So
`invoice.created` carries the lines drafted with it, and a subscription started 90 days back
carries the state its catch-up reached. Why not the read-model row: the row is as of whenever
the message is built (an invoice already paid when `invoice.created` goes out, after downtime),
and it would tie deliveries to the projector's progress. `dunning.step` carries the step (its
`action`: retry, reminder or final, `step`, `scheduled_at`, `attempts`, `next_action_at`,
`final_action`) with `invoice_id` and the invoice as the step left it (`invoice`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson

from application import receipts
from application.ledger import Ledger

RECEIPTS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "Customer": receipts.customer_receipt,
    "Subscription": receipts.subscription_receipt,
    "Invoice": receipts.invoice_receipt,
    "Payment": receipts.payment_receipt,
    "Alert": receipts.alert_receipt,
    "CreditNote": receipts.credit_note_receipt,
}
STEP_EVENT = "Invoice.DunningStepTaken"
ENVELOPE_FIELDS = ("occurred_at", "timestamp", "originator_id", "originator_version", "class_version")


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def message_body(
    ledger: Ledger,
    *,
    webhook_type: str,
    event_type: str,
    stream_id: UUID,
    version_after_write: int,
    position: int,
    occurred_at: datetime,
    payload: Callable[[], dict[str, Any]],
) -> bytes:
    data = resource_data(
        ledger,
        event_type=event_type,
        stream_id=stream_id,
        version_after_write=version_after_write,
        position=position,
        occurred_at=occurred_at,
        payload=payload,
    )
    return orjson.dumps({"type": webhook_type, "timestamp": iso(occurred_at), "data": data})


def resource_data(
    ledger: Ledger,
    *,
    event_type: str,
    stream_id: UUID,
    version_after_write: int,
    position: int,
    occurred_at: datetime,
    payload: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    to_receipt = RECEIPTS.get(event_type.split(".", 1)[0])
    if to_receipt is not None:
        aggregate: object = ledger.repository.get(stream_id, version=version_after_write)
        if event_type == STEP_EVENT:
            step = {k: v for k, v in payload().items() if k not in ENVELOPE_FIELDS}
            return {
                "invoice_id": str(stream_id),
                "position": position,
                "occurred_at": iso(occurred_at),
                **step,
                "invoice": to_receipt(aggregate),
            }
        return {**to_receipt(aggregate), "position": position}
    fields = {k: v for k, v in payload().items() if k not in ENVELOPE_FIELDS}
    return {"id": str(stream_id), "position": position, "occurred_at": iso(occurred_at), **fields}
