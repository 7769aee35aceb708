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
