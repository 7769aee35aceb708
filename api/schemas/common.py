from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, WithJsonSchema, field_validator
from pydantic_core import PydanticCustomError

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

FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2999, 12, 31)


def _queryable_day(day: date) -> date:
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"a day between {FIRST_DAY} and {LAST_DAY}")
    return day


# A day asked about: the ledger holds nothing before its epoch, and the bounds keep every day
# arithmetic (the day before, a window's end) inside the calendar.
QueryDay = Annotated[date, AfterValidator(_queryable_day)]

# Money is a JSON integer (strict: "2000" and 2000.0 are refused, not coerced), at most 10^15.
MinorUnits = Annotated[
    StrictInt, Field(ge=0, le=MAX_AMOUNT, description="integer count of minor units, at most 10^15")
]
PositiveMinorUnits = Annotated[
    StrictInt, Field(gt=0, le=MAX_AMOUNT, description="integer count of minor units, at most 10^15")
]
Quantity = Annotated[StrictInt, Field(ge=1, le=MAX_QUANTITY, description="a whole number, at most 10^9")]


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_nul(v) for v in value)
    return False


class Request(BaseModel):
    """Base of request bodies: unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def no_nul_characters(cls, value: Any) -> Any:
        # PostgreSQL text and jsonb cannot hold U+0000: an event carrying one would be recorded
        # and then stop every read model that copies the string. Refused at the door instead.
        if _holds_nul(value):
            raise PydanticCustomError("nul_character", "may not contain the NUL character (U+0000)")
        return value


class Command(Request):
    effective_at: datetime | None = Field(
        default=None, description="business time (ISO 8601, UTC) of the change; default now"
    )


class Written(BaseModel):
    position: int = Field(description="log position of the write's last event; pass as min_position")


class ListOf(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")
