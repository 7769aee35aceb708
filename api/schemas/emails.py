"""What GET /v1/emails answers: the e-mails the log called for, and what became of each."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

EmailKind = Literal[
    "invoice_finalized", "payment_receipt", "payment_failed", "credit_note", "reminder", "final_notice"
]
EmailStatus = Literal["pending", "sent", "skipped"]


class EmailOut(BaseModel):
    id: UUID = Field(validation_alias="email_id", description="the Email aggregate's id (uuid5 of `key`)")
    key: str = Field(description="the message's natural key: kind, subject and the event that caused it")
    kind: EmailKind
    subject_id: UUID = Field(description="the invoice, payment or credit note it is about")
    customer_id: UUID | None
    status: EmailStatus = Field(description="pending (queued or being retried), sent, or skipped")
    note: str | None = Field(description="why a skipped message is not sent")
    position: int = Field(description="log position of the event that called for it")
    recipient: str | None
    subject: str | None
    message_id: str | None = Field(description="the Message-ID it was sent with (the same on every resend)")
    transport: str | None = Field(description="smtp or outbox")
    attempts: int
    last_error: str | None = Field(description="why the last attempt failed (the message is retried)")
    next_attempt_at: datetime | None
    created_at: datetime
    sent_at: datetime | None
