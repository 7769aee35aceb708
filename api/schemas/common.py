from __future__ import annotations

from datetime import datetime
from typing import Annotated, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, WithJsonSchema

from domain.money import CURRENCY_EXPONENTS, MAX_AMOUNT, MAX_QUANTITY

T = TypeVar("T")

CURRENCY_CODES = sorted(CURRENCY_EXPONENTS)


def _iso_4217(code: str) -> str:
    if code not in CURRENCY_EXPONENTS:
        raise ValueError("is not an active ISO 4217 currency code (EUR, USD, JPY...)")
    return code


# An active ISO 4217 code; the OpenAPI document lists them all (an enum), the validator says
# which field is wrong without reciting the list.
Currency = Annotated[
    str,
    AfterValidator(_iso_4217),
    WithJsonSchema({"type": "string", "enum": CURRENCY_CODES, "description": "ISO 4217 code"}),
]

# Money is a JSON integer (strict: "2000" and 2000.0 are refused, not coerced), at most 10^15.
MinorUnits = Annotated[
    StrictInt, Field(ge=0, le=MAX_AMOUNT, description="integer count of minor units, at most 10^15")
]
PositiveMinorUnits = Annotated[
    StrictInt, Field(gt=0, le=MAX_AMOUNT, description="integer count of minor units, at most 10^15")
]
Quantity = Annotated[StrictInt, Field(ge=1, le=MAX_QUANTITY, description="a whole number, at most 10^9")]


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
