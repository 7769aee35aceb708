"""Proration by the second (SPEC 7): the reference example and properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import InvalidValue
from domain.proration import prorate, proration

START = datetime(2025, 3, 1, tzinfo=UTC)
END = datetime(2025, 4, 1, tzinfo=UTC)


def test_1000_a_month_to_2000_a_month_exactly_halfway_is_minus_500_and_plus_1000() -> None:
    halfway = START + (END - START) / 2
    p = proration(old_amount=1000, new_amount=2000, period_start=START, period_end=END, at=halfway)
    assert (p.credit, p.charge) == (-500, 1000)


def test_a_change_at_the_period_end_prorates_nothing_and_at_its_start_everything() -> None:
    at_end = proration(old_amount=1000, new_amount=2000, period_start=START, period_end=END, at=END)
    at_start = proration(old_amount=1000, new_amount=2000, period_start=START, period_end=END, at=START)
    assert (at_end.credit, at_end.charge) == (0, 0)
    assert (at_start.credit, at_start.charge) == (-1000, 2000)


def test_each_figure_is_rounded_half_even_once() -> None:
    # 3 seconds left of 4: 10 × 3 / 4 = 7.5 → 8; 6 × 3 / 4 = 4.5 → 4.
    end = START + timedelta(seconds=4)
    p = proration(
        old_amount=10, new_amount=6, period_start=START, period_end=end, at=START + timedelta(seconds=1)
    )
    assert (p.credit, p.charge) == (-8, 4)


def test_a_moment_outside_the_period_is_refused() -> None:
    with pytest.raises(InvalidValue):
        proration(
            old_amount=1, new_amount=1, period_start=START, period_end=END, at=END + timedelta(seconds=1)
        )


@settings(max_examples=300)
@given(
    st.integers(0, 10**12),
    st.integers(1, 400 * 86_400),
    st.lists(st.integers(0, 10**6), min_size=1, max_size=6),
)
def test_a_whole_period_prorated_in_slices_adds_up_to_the_full_amount_within_a_unit_per_line(
    amount: int, period_seconds: int, cuts: list[int]
) -> None:
    end = START + timedelta(seconds=period_seconds)
    moments = sorted({START + timedelta(seconds=c % period_seconds) for c in cuts} | {START, end})
    # Each slice billed as a line of its own, rounded on its own.
    lines = [prorate(amount, int((b - a).total_seconds()), period_seconds) for a, b in pairwise(moments)]
    assert abs(sum(lines) - amount) <= len(lines)
    whole = proration(old_amount=0, new_amount=amount, period_start=START, period_end=end, at=START)
    assert whole.charge == amount


@settings(max_examples=300)
@given(st.integers(0, 10**12), st.integers(0, 10**12), st.integers(1, 400 * 86_400), st.integers(0, 10**9))
def test_credit_and_charge_are_each_within_half_a_unit_of_the_exact_share(
    old: int, new: int, period_seconds: int, offset: int
) -> None:
    end = START + timedelta(seconds=period_seconds)
    at = START + timedelta(seconds=offset % (period_seconds + 1))
    p = proration(old_amount=old, new_amount=new, period_start=START, period_end=end, at=at)
    remaining = int((end - at).total_seconds())
    assert abs(-p.credit * period_seconds - old * remaining) * 2 <= period_seconds
    assert abs(p.charge * period_seconds - new * remaining) * 2 <= period_seconds
