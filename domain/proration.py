"""Proration by the second (SPEC 7, "Proration").

Changing plan or quantity, or canceling now, part-way through a period credits the unused part of
the old terms and charges the remaining part of the new ones:
    credit = −(old terms × unused seconds / period seconds)
    charge =   new terms × remaining seconds / period seconds
each rounded half-even once, here. Example: 1000 a month to 2000 a month exactly halfway through the
period gives −500 and +1000."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain.errors import InvalidValue
from domain.money import divide_half_even

BEHAVIORS = ("create_prorations", "always_invoice", "none")


def check_behavior(behavior: str) -> str:
    if behavior not in BEHAVIORS:
        raise InvalidValue(
            "proration_behavior is create_prorations, always_invoice or none", field="proration_behavior"
        )
    return behavior


def seconds_between(start: datetime, end: datetime) -> int:
    """Whole seconds from start to end (never negative)."""
    return max(0, int((end - start).total_seconds()))


def prorate(amount: int, seconds: int, period_seconds: int) -> int:
    """amount × seconds / period_seconds, rounded half-even once."""
    if period_seconds <= 0:
        raise InvalidValue("a period lasts at least a second", field="period")
    return divide_half_even(amount * seconds, period_seconds)


@dataclass(frozen=True)
class Proration:
    """The credit for the old terms and the charge for the new ones over what remains of the
    period from `at`; either may be 0 (a cancellation charges nothing new)."""

    credit: int  # negative or 0
    charge: int  # positive or 0
    period_start: datetime
    period_end: datetime
    at: datetime


def proration(
    *, old_amount: int, new_amount: int, period_start: datetime, period_end: datetime, at: datetime
) -> Proration:
    """`old_amount` and `new_amount` are whole-period amounts (plan amount × quantity)."""
    if not period_start <= at <= period_end:
        raise InvalidValue("a proration happens within its period", field="effective_at")
    total = seconds_between(period_start, period_end)
    remaining = seconds_between(at, period_end)
    return Proration(
        credit=-prorate(old_amount, remaining, total),
        charge=prorate(new_amount, remaining, total),
        period_start=period_start,
        period_end=period_end,
        at=at,
    )
