from __future__ import annotations

from datetime import datetime
from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

T = TypeVar("T")

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
MinorUnits = Annotated[int, Field(ge=0, le=10**15, description="integer count of minor units")]
PositiveMinorUnits = Annotated[int, Field(gt=0, le=10**15, description="integer count of minor units")]


class Request(BaseModel):
    """Base of request bodies: unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Command(Request):
    effective_at: datetime | None = Field(
        default=None, description="business time (ISO 8601, UTC) of the change; default now"
    )


class Written(BaseModel):
    position: int = Field(description="log position of the write's last event; pass as min_position")


class ListOf(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")
