"""A command's record: kept in the log under an id derived from its idempotency key, in the same
transaction as the command's events, so a retry can only ever find all of it or none of it."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.base import LedgerAggregate


class CommandRecord(LedgerAggregate):
    @event("Answered")
    def __init__(
        self,
        id: UUID,
        idempotency_key: str,
        request_hash: str,
        receipt: dict[str, Any],
        resource_id: str,
        occurred_at: datetime,
    ) -> None:
        self.idempotency_key = idempotency_key
        self.request_hash = request_hash
        self.receipt = receipt
        self.resource_id = resource_id


class IngestRecord(LedgerAggregate):
    """An ingested CloudEvent (other than a usage measurement, whose UsageRecord plays this part):
    kept under an id derived from the sender's key (`source`, `id`), in the same append as the
    events it caused, so a resend finds it and answers `duplicate`, or `rejected` if its
    content differs (`content_hash`)."""

    @event("Received")
    def __init__(
        self,
        id: UUID,
        source: str,
        event_id: str,
        event_type: str,
        content_hash: str,
        resource_id: str,
        customer_id: UUID | None,
        occurred_at: datetime,
    ) -> None:
        self.source = source
        self.event_id = event_id
        self.event_type = event_type
        self.content_hash = content_hash
        self.resource_id = resource_id
        self.customer_id = customer_id
