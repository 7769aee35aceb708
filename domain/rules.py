"""Pure billing rules shared by the write and read sides."""

from __future__ import annotations

from domain.money import divide_half_even
from domain.periods import months_in


def monthly_recurring_amount(amount: int, quantity: int, interval: str, interval_count: int) -> int:
    """A subscription's MRR contribution: amount × quantity / months, rounded half-even once."""
    return divide_half_even(amount * quantity, months_in(interval, interval_count))
