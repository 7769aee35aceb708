from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.base import ensure_utc
from domain.errors import InvalidValue
from domain.periods import add_months, months_in, period_end, trial_end
from tests.unit.factories import at

anchors = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2500, 12, 31), timezones=st.just(UTC)
)
month_steps = st.integers(min_value=1, max_value=36)


def last_day(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def month_number(moment: datetime) -> int:
    return moment.year * 12 + moment.month - 1


# ---------------------------------------------------------------- add_months


def test_period_end_is_clamped_to_month_end_from_the_anchor() -> None:
    anchor = at(2025, 1, 31)
    boundaries = [period_end(anchor, 1, i) for i in range(4)]
    assert boundaries == [at(2025, 2, 28), at(2025, 3, 31), at(2025, 4, 30), at(2025, 5, 31)]


def test_a_leap_february_keeps_its_29th() -> None:
    assert add_months(at(2024, 1, 31), 1) == at(2024, 2, 29)
    assert add_months(at(2024, 2, 29), 12) == at(2025, 2, 28)
    assert add_months(at(2024, 2, 29), 48) == at(2028, 2, 29)


def test_a_yearly_anchor_on_february_29th_returns_to_it_in_leap_years() -> None:
    anchor = at(2024, 2, 29)
    assert [period_end(anchor, 12, i) for i in range(4)] == [
        at(2025, 2, 28),
        at(2026, 2, 28),
        at(2027, 2, 28),
        at(2028, 2, 29),
    ]


def test_add_months_crosses_year_ends_both_ways() -> None:
    assert add_months(at(2025, 11, 30), 3) == at(2026, 2, 28)
    assert add_months(at(2025, 3, 31), -1) == at(2025, 2, 28)
    assert add_months(at(2025, 1, 15), -1) == at(2024, 12, 15)
    assert add_months(at(2025, 1, 15), 0) == at(2025, 1, 15)


def test_add_months_keeps_the_time_of_day_and_the_zone() -> None:
    moment = datetime(2025, 1, 31, 13, 45, 7, 123, tzinfo=UTC)
    moved = add_months(moment, 1)
    assert moved == datetime(2025, 2, 28, 13, 45, 7, 123, tzinfo=UTC)
    assert moved.tzinfo is UTC


@given(anchors, st.integers(min_value=-600, max_value=600))
def test_add_months_lands_on_the_anchor_day_clamped_to_the_month_end(anchor: datetime, months: int) -> None:
    moved = add_months(anchor, months)
    assert month_number(moved) - month_number(anchor) == months
    assert moved.day == min(anchor.day, last_day(moved.year, moved.month))
    assert moved.time() == anchor.time()
    assert moved.tzinfo == anchor.tzinfo


@given(anchors, month_steps, st.integers(min_value=0, max_value=60))
def test_period_boundaries_never_drift_from_the_anchor(
    anchor: datetime, months_per_period: int, index: int
) -> None:
    boundary = period_end(anchor, months_per_period, index)
    assert month_number(boundary) - month_number(anchor) == months_per_period * (index + 1)
    assert boundary.day == min(anchor.day, last_day(boundary.year, boundary.month))


@given(anchors, month_steps)
def test_period_boundaries_strictly_increase(anchor: datetime, months_per_period: int) -> None:
    boundaries = [anchor] + [period_end(anchor, months_per_period, i) for i in range(30)]
    assert all(a < b for a, b in pairwise(boundaries))


@given(anchors, month_steps, st.integers(min_value=1, max_value=40))
def test_chaining_from_the_previous_boundary_would_drift_but_the_anchor_does_not(
    anchor: datetime, months_per_period: int, periods: int
) -> None:
    """Computing from the anchor is never earlier than chaining, and never loses the anchor day."""
    chained = anchor
    for index in range(periods):
        chained = add_months(chained, months_per_period)
        from_anchor = period_end(anchor, months_per_period, index)
        assert from_anchor >= chained
        assert from_anchor.day >= chained.day


# ---------------------------------------------------------------- months_in / trial_end


@pytest.mark.parametrize(
    ("interval", "count", "months"), [("month", 1, 1), ("month", 3, 3), ("year", 1, 12), ("year", 2, 24)]
)
def test_months_in_an_interval(interval: str, count: int, months: int) -> None:
    assert months_in(interval, count) == months


@pytest.mark.parametrize("count", [0, -1])
def test_an_interval_count_below_one_is_refused(count: int) -> None:
    with pytest.raises(InvalidValue) as caught:
        months_in("month", count)
    assert caught.value.field == "interval_count"


@pytest.mark.parametrize("interval", ["week", "day", "Month", "", "years"])
def test_an_interval_other_than_month_or_year_is_refused(interval: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        months_in(interval, 1)
    assert caught.value.field == "interval"


def test_trial_end_is_trial_days_after_the_start() -> None:
    assert trial_end(at(2025, 1, 31, 10), 14) == at(2025, 2, 14, 10)
    assert trial_end(at(2025, 1, 31), 0) == at(2025, 1, 31)


def test_negative_trial_days_are_refused() -> None:
    with pytest.raises(InvalidValue) as caught:
        trial_end(at(2025, 1, 31), -1)
    assert caught.value.field == "trial_days"


# ---------------------------------------------------------------- business time


def test_a_naive_moment_is_refused_rather_than_guessed() -> None:
    with pytest.raises(InvalidValue) as caught:
        ensure_utc(datetime(2025, 1, 31), field="occurred_at")
    assert caught.value.field == "occurred_at"


def test_an_aware_moment_is_converted_to_utc() -> None:
    paris = timezone(timedelta(hours=1))
    moment = ensure_utc(datetime(2025, 1, 31, 0, 30, tzinfo=paris))
    assert moment == at(2025, 1, 30, 23, 30)
    assert moment.utcoffset() == timedelta(0)
    assert moment.day == 30
