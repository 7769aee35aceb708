"""A webhook endpoint: where the ledger posts its events, for which types, signed with which secret.

Its changes are events like any other, so an auditor sees who added, rotated, disabled or deleted
an endpoint and when. The signing secrets themselves never enter the log: an event names a secret
by its id and a fingerprint (the first bytes of its SHA-256, which reveal nothing of 32 random
bytes); the secret is kept encrypted outside the log (`infra/webhook_vault.py`)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import event

from domain.base import LedgerAggregate
from domain.errors import InvalidValue, NotFound, WebhookEndpointDisabled
from domain.webhook_types import check_event_types

ENABLED, DISABLED, DELETED = "enabled", "disabled", "deleted"
MAX_DESCRIPTION = 500


class WebhookEndpoint(LedgerAggregate):
    @classmethod
    def create(
        cls,
        *,
        endpoint_id: UUID,
        url: str,
        event_types: list[str],
        description: str | None,
        secret_id: UUID,
        secret_fingerprint: str,
        occurred_at: datetime,
    ) -> WebhookEndpoint:
        if description is not None and len(description) > MAX_DESCRIPTION:
            raise InvalidValue(f"at most {MAX_DESCRIPTION} characters", field="description")
        return cls._created_with_id(
            endpoint_id,
            "Created",
            url=url,
            event_types=check_event_types(event_types),
            description=description,
            secret_id=secret_id,
            secret_fingerprint=secret_fingerprint,
            occurred_at=occurred_at,
        )

    @event("Created")
    def __init__(
        self,
        url: str,
        event_types: list[str],
        description: str | None,
        secret_id: UUID,
        secret_fingerprint: str,
        occurred_at: datetime,
    ) -> None:
        self.url = url
        self.event_types = list(event_types)
        self.description = description
        self.secret_id = secret_id
        self.secret_fingerprint = secret_fingerprint
        self.previous_secret_id: UUID | None = None
        self.previous_secret_valid_until: datetime | None = None
        self.status = ENABLED
        self.created_at = occurred_at
        self.disabled_at: datetime | None = None
        self.disabled_reason: str | None = None
        self.deleted_at: datetime | None = None

    def check_not_deleted(self) -> None:
        if self.status == DELETED:
            raise NotFound(f"no webhook endpoint with id {self.id}")

    def check_enabled(self) -> None:
        self.check_not_deleted()
        if self.status == DISABLED:
            raise WebhookEndpointDisabled(f"the webhook endpoint is disabled: {self.disabled_reason}")

    def rotate_secret(
        self,
        *,
        secret_id: UUID,
        secret_fingerprint: str,
        previous_valid_until: datetime,
        occurred_at: datetime,
    ) -> None:
        """A new secret signs from now on; the current one goes on signing beside it until
        `previous_valid_until` (a secret older than that stops at once)."""
        self.check_not_deleted()
        self._rotate_secret(
            secret_id=secret_id,
            secret_fingerprint=secret_fingerprint,
            previous_secret_id=self.secret_id,
            previous_valid_until=previous_valid_until,
            occurred_at=occurred_at,
        )

    @event("SecretRotated")
    def _rotate_secret(
        self,
        secret_id: UUID,
        secret_fingerprint: str,
        previous_secret_id: UUID,
        previous_valid_until: datetime,
        occurred_at: datetime,
    ) -> None:
        self.previous_secret_id = previous_secret_id
        self.previous_secret_valid_until = previous_valid_until
        self.secret_id = secret_id
        self.secret_fingerprint = secret_fingerprint

    def disable(self, *, reason: str, occurred_at: datetime) -> None:
        """Stop delivering to the endpoint (it answered 410 Gone)."""
        self.check_enabled()
        self._disable(reason=reason, occurred_at=occurred_at)

    @event("Disabled")
    def _disable(self, reason: str, occurred_at: datetime) -> None:
        self.status = DISABLED
        self.disabled_at = occurred_at
        self.disabled_reason = reason

    def delete(self, *, occurred_at: datetime) -> None:
        self.check_not_deleted()
        self._delete(occurred_at=occurred_at)

    @event("Deleted")
    def _delete(self, occurred_at: datetime) -> None:
        self.status = DELETED
        self.deleted_at = occurred_at
