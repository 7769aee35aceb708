"""Coupons (SPEC 7, "Discounts"): a percentage or an amount off, once, for a number of invoices,
or forever. Applied to a subscription (or to all of a customer's invoices; a subscription's own
discount wins), a coupon becomes a discount: the coupon's terms plus how many invoices it has left."""

from __future__ import annotations

import copy
import decimal
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain import ids
from domain.base import LedgerAggregate
from domain.billing import Discount
from domain.errors import InvalidValue
from domain.money import check_amount, check_currency

DURATIONS = ("once", "repeating", "forever")
MAX_PERIODS = 1200


def check_percent(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidValue(
            'percent_off is a number in (0, 100], as a string like "12.5"', field="percent_off"
        )
    try:
        percent = Decimal(value)
    except decimal.InvalidOperation:
        raise InvalidValue(f"'{value}' is not a number", field="percent_off") from None
    if not percent.is_finite() or not 0 < percent <= 100 or percent.as_tuple().exponent < -4:  # type: ignore[operator]
        raise InvalidValue("percent_off is in (0, 100], with at most 4 decimals", field="percent_off")
    return percent


class Coupon(LedgerAggregate):
    @staticmethod
    def create_id(code: str) -> UUID:
        return ids.coupon_id(code)

    @classmethod
    def define(
        cls,
        *,
        code: str,
        name: str,
        percent_off: str | int | None,
        amount_off: int | None,
        currency: str | None,
        duration: str,
        duration_in_periods: int | None,
        occurred_at: datetime,
    ) -> Coupon:
        if not code.strip():
            raise InvalidValue("a coupon code cannot be blank", field="code")
        if (percent_off is None) == (amount_off is None):
            raise InvalidValue("a coupon has either percent_off or amount_off", field="percent_off")
        percent = None if percent_off is None else str(check_percent(percent_off))
        if amount_off is not None:
            check_amount(amount_off, "amount_off")
            if amount_off == 0:
                raise InvalidValue("amount_off is at least 1", field="amount_off")
            if currency is None:
                raise InvalidValue("an amount off needs its currency", field="currency")
            check_currency(currency)
        if duration not in DURATIONS:
            raise InvalidValue("duration is once, repeating or forever", field="duration")
        if duration == "repeating":
            if duration_in_periods is None or not 1 <= duration_in_periods <= MAX_PERIODS:
                raise InvalidValue(
                    f"a repeating coupon lasts 1 to {MAX_PERIODS} periods", field="duration_in_periods"
                )
        elif duration_in_periods is not None:
            raise InvalidValue("only a repeating coupon has duration_in_periods", field="duration_in_periods")
        return cls(
            code=code,
            name=name or code,
            percent_off=percent,
            amount_off=amount_off,
            currency=currency if amount_off is not None else None,
            duration=duration,
            duration_in_periods=duration_in_periods,
            occurred_at=occurred_at,
        )

    @event("Defined")
    def __init__(
        self,
        code: str,
        name: str,
        percent_off: str | None,
        amount_off: int | None,
        currency: str | None,
        duration: str,
        duration_in_periods: int | None,
        occurred_at: datetime,
    ) -> None:
        self.code = code
        self.name = name
        self.percent_off = percent_off
        self.amount_off = amount_off
        self.currency = currency
        self.duration = duration
        self.duration_in_periods = duration_in_periods

    def terms(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "percent_off": self.percent_off,
            "amount_off": self.amount_off,
            "currency": self.currency,
            "duration": self.duration,
            "duration_in_periods": self.duration_in_periods,
        }

    def as_applied(self) -> dict[str, Any]:
        """The discount a subscription or customer carries once this coupon is applied."""
        left = {"once": 1, "repeating": self.duration_in_periods, "forever": None}[self.duration]
        return {
            "coupon": self.code,
            **{k: v for k, v in self.terms().items() if k != "code"},
            "periods_left": left,
        }

    def check_currency_of(self, currency: str) -> None:
        if self.currency is not None and self.currency != currency:
            raise InvalidValue(
                f"coupon {self.code} takes {self.currency} off; the subscription bills in {currency}",
                field="coupon",
            )


def redeemed(discount: dict[str, Any] | None) -> dict[str, Any] | None:
    """The discount after one more invoice used it: gone once its periods are used up."""
    if discount is None or discount.get("periods_left") is None:
        return copy.deepcopy(discount)
    left = int(discount["periods_left"]) - 1
    return None if left <= 0 else {**discount, "periods_left": left}


def as_discount(discount: dict[str, Any] | None, currency: str) -> Discount | None:
    """What the billing pipeline applies to an invoice in `currency`, if anything."""
    if discount is None:
        return None
    if discount.get("percent_off") is not None:
        return Discount(discount["coupon"], percent_off=Decimal(discount["percent_off"]))
    if discount.get("currency") != currency:
        return None
    return Discount(discount["coupon"], amount_off=int(discount["amount_off"]))
