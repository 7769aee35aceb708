from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)
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


def _utc_moment(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        moment = moment.replace(tzinfo=UTC)  # a moment without an offset is read as UTC
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"a moment between {FIRST_DAY} and {LAST_DAY}") from None
    if not FIRST_DAY <= moment.date() <= LAST_DAY:
        raise ValueError(f"a moment between {FIRST_DAY} and {LAST_DAY}")
    return moment


# A moment a command describes (an invoice line's period), in UTC within the days above, so it
# compares with any other and every read model can hold it.
Moment = Annotated[datetime, AfterValidator(_utc_moment)]

# Money is a JSON integer (strict: "2000" and 2000.0 are refused, not coerced), at most 10^15.
MinorUnits = Annotated[
    StrictInt, Field(ge=0, le=MAX_AMOUNT, description="integer count of minor units, at most 10^15")
]
PositiveMinorUnits = Annotated[
    StrictInt, Field(gt=0, le=MAX_AMOUNT, description="integer count of minor units, at most 10^15")
]
Quantity = Annotated[StrictInt, Field(ge=1, le=MAX_QUANTITY, description="a whole number, at most 10^9")]


# A rate, not money: a decimal string of minor units, so sub-cent prices are exact ("0.06" is 0.06
# cents); a whole number is taken as well.
def _unit_amount(value: Any) -> Any:
    """A whole number is taken as its decimal string; a float never (it is not exact)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise PydanticCustomError("unit_amount", 'a unit amount is a decimal string, like "0.06"')
    return value


UnitAmount = Annotated[
    str,
    BeforeValidator(_unit_amount),
    StringConstraints(pattern=r"^[0-9]{1,16}(\.[0-9]{1,12})?$"),
    Field(description='a decimal string of minor units, e.g. "0.06" (sub-cent prices are exact)'),
]


def _unstorable(value: Any) -> str | None:
    """Why PostgreSQL or JSON could not hold this value as given, if it could not."""
    if isinstance(value, str):
        return "may not contain the NUL character (U+0000)" if "\x00" in value else None
    if isinstance(value, float):
        return None if math.isfinite(value) else "numbers are finite (1e400 is not)"
    if isinstance(value, dict):
        return next((w for k, v in value.items() if (w := _unstorable(k) or _unstorable(v))), None)
    if isinstance(value, list | tuple):
        return next((w for v in value if (w := _unstorable(v))), None)
    return None


class Request(BaseModel):
    """Base of request bodies: unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def storable(cls, value: Any) -> Any:
        # PostgreSQL text and jsonb cannot hold U+0000, and JSON has no Infinity: an event
        # carrying either would be recorded and then stop (or silently change in) every read
        # model that copies it. Refused at the door instead.
        if (why := _unstorable(value)) is not None:
            raise PydanticCustomError("unstorable_value", why)
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
