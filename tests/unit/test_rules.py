from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import InvalidValue
from domain.rules import monthly_recurring_amount
from tests.unit.factories import half_even_oracle


def test_a_yearly_plan_contributes_a_twelfth_rounded_half_even() -> None:
    assert monthly_recurring_amount(200000, 1, "year", 1) == 16667


def test_a_monthly_plan_contributes_its_amount_times_quantity() -> None:
    assert monthly_recurring_amount(2900, 3, "month", 1) == 8700


@pytest.mark.parametrize(
    ("amount", "count", "expected"),
    [(5, 2, 2), (7, 2, 4), (3, 2, 2), (1, 2, 0), (9, 2, 4), (11, 2, 6)],
)
def test_ties_round_to_even(amount: int, count: int, expected: int) -> None:
    # amount / interval_count months: 2.5 -> 2, 3.5 -> 4, 1.5 -> 2, 0.5 -> 0, 4.5 -> 4, 5.5 -> 6
    assert monthly_recurring_amount(amount, 1, "month", count) == expected


def test_quantity_multiplies_before_the_single_rounding() -> None:
    # 1000 x 5 / 12 = 416.67 -> 417; rounding 1000/12 = 83 first would give 415.
    assert monthly_recurring_amount(1000, 5, "year", 1) == 417


def test_a_multi_year_plan_is_spread_over_all_its_months() -> None:
    assert monthly_recurring_amount(240000, 1, "year", 2) == 10000
    assert monthly_recurring_amount(9000, 1, "month", 3) == 3000


@given(
    st.integers(min_value=0, max_value=10**9),
    st.integers(min_value=1, max_value=10_000),
    st.sampled_from(["month", "year"]),
    st.integers(min_value=1, max_value=36),
)
def test_monthly_amount_is_the_exact_monthly_fraction_rounded_half_even(
    amount: int, quantity: int, interval: str, count: int
) -> None:
    months = count * (12 if interval == "year" else 1)
    result = monthly_recurring_amount(amount, quantity, interval, count)
    assert result == half_even_oracle(amount * quantity, months)
    assert abs(Fraction(result) - Fraction(amount * quantity, months)) <= Fraction(1, 2)


def test_an_unknown_interval_has_no_monthly_amount() -> None:
    with pytest.raises(InvalidValue):
        monthly_recurring_amount(1000, 1, "week", 1)
    with pytest.raises(InvalidValue):
        monthly_recurring_amount(1000, 1, "month", 0)
