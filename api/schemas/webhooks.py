"""Bodies of the outgoing webhook endpoints and deliveries (SPEC section 8)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, Field, WithJsonSchema

from api.schemas.common import Request, Written
from domain.webhook_endpoint import MAX_DESCRIPTION
from domain.webhook_types import ALL_TYPES, WEBHOOK_TYPES
from infra.webhook_targets import MAX_URL_LENGTH

# Checked by the domain (422 naming `event_types`); the document lists them for clients.
EventType = Annotated[
    str,
    WithJsonSchema(
        {
            "type": "string",
            "enum": [*WEBHOOK_TYPES, ALL_TYPES],
            "description": "a webhook type, or '*' for every type (present and future)",
        }
    ),
]


class WebhookEndpointCreate(Request):
    url: str = Field(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        description="http(s) URL the ledger posts to; loopback and private addresses are refused"
        " unless LEDGER_WEBHOOKS_ALLOW_PRIVATE=true",
    )
    event_types: list[EventType] = Field(min_length=1, max_length=len(WEBHOOK_TYPES) + 1)
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION)


class WebhookEndpointOut(BaseModel):
    id: UUID
    url: str
    event_types: list[str]
    description: str | None
    status: Literal["enabled", "disabled", "deleted"]
    secret_fingerprint: str = Field(description="sha256: and the first 16 hex digits of the secret's hash")
    previous_secret_valid_until: datetime | None = Field(
        description="after a rotation, the replaced secret signs beside the new one until then"
    )
    created_at: datetime
    disabled_at: datetime | None = None
    disabled_reason: str | None = None


class WebhookEndpointWritten(WebhookEndpointOut, Written):
    pass


class WebhookEndpointCreated(WebhookEndpointWritten):
    secret: str | None = Field(
        description="the signing secret (whsec_…), shown in this answer only; Standard Webhooks"
        " libraries verify with it. Null only when an Idempotency-Key retry comes after it was replaced"
    )


class WebhookAttemptOut(BaseModel):
    attempt: int
    started_at: datetime
    duration_ms: int | None
    status_code: int | None = Field(description="the receiver's answer; null: none (timeout, refused)")
    outcome: str | None = Field(
        description="succeeded, retry, failed (no attempt left), gone (410: endpoint disabled),"
        " not_sent, interrupted; null while in flight"
    )
    error: str | None
    response: str | None = Field(description="the first KiB of the receiver's answer")
    next_attempt_at: datetime | None


class WebhookDeliveryOut(BaseModel):
    id: UUID
    endpoint_id: UUID
    webhook_id: str = Field(description="the webhook-id header: the same on every attempt and resend")
    type: str
    position: int = Field(description="log position of the event it announces")
    status: Literal["pending", "succeeded", "failed", "canceled"]
    attempt_count: int
    next_attempt_at: datetime | None = Field(description="when pending: the next attempt (wall clock)")
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    attempts: list[WebhookAttemptOut]
