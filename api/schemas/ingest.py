"""Response bodies of the ingest endpoints (SPEC section 5, Ingest and Stripe webhooks).

Request bodies are CloudEvents (read by `ingest.cloudevents`, not pydantic) and Stripe events
(verified and read by `ingest.stripe`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class EventResultOut(BaseModel):
    id: str | None = Field(description="the event's id (null if it had none)")
    status: Literal["accepted", "duplicate", "rejected"]
    code: str | None = Field(default=None, description="why it was rejected, machine-readable")
    reason: str | None = Field(default=None, description="why it was rejected")


class IngestAnswer(BaseModel):
    results: list[EventResultOut] = Field(description="one per event, in the order sent")
    position: int = Field(description="log position of the last event recorded; pass as min_position")


class StripeWebhookAnswer(BaseModel):
    id: str = Field(description="the Stripe event id")
    type: str
    status: Literal["accepted", "duplicate"]
    position: int


CLOUDEVENTS_REQUEST = {
    "requestBody": {
        "required": True,
        "content": {
            "application/cloudevents+json": {"schema": {"type": "object"}},
            "application/cloudevents-batch+json": {"schema": {"type": "array", "items": {"type": "object"}}},
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
        },
    }
}
