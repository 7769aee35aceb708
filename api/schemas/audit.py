"""Response bodies of the audit endpoints: the log as stored, and the integrity proof."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field


class LoggedEvent(BaseModel):
    position: int = Field(description="global log position")
    stream_id: UUID
    version: int = Field(description="the event's version within its stream")
    type: str
    occurred_at: datetime = Field(description="business time")
    recorded_at: datetime = Field(description="when the ledger stored it")
    customer_id: UUID | None
    source: str
    actor: str | None = Field(description="the key id of whoever caused it")
    reason: str | None = Field(description="the X-Reason header of the command, if sent")
    correlation_id: UUID | None
    causation_id: UUID | None
    schema_version: int
    payload: dict[str, Any] = Field(description="the payload exactly as stored")


class StreamHistory(BaseModel):
    stream_id: UUID
    events: list[LoggedEvent]
    next_after_version: int | None = Field(
        description="pass as `after_version` for the next page; null on the last"
    )


class LogPage(BaseModel):
    events: list[LoggedEvent]
    next_after: int | None = Field(description="pass as `after` for the next page; null on the last")


class VerificationOut(BaseModel):
    ok: bool
    events_checked: int
    sealed_position: int = Field(description="the last position covered by a seal")
    sealed_hash: str | None = Field(description="chain hash at sealed_position; keep it elsewhere")
    first_bad_position: int | None
    problem: Literal["altered", "removed", "inserted", "seal_damaged"] | None
    detail: str | None
