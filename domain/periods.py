"""Billing periods: anniversary-based, clamped to the month's last day, as Stripe does.

Every boundary is computed from the anchor (Jan 31 → Feb 28 → Mar 31), never chained from the
previous boundary, so a short month does not shift later periods.
"""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta
from typing import Literal

from domain.errors import InvalidValue

Interval = Literal["month", "year"]


def months_in(interval: str, interval_count: int) -> int:
    if interval_count < 1:
        raise InvalidValue("interval_count must be at least 1", field="interval_count")
    if interval == "month":
        return interval_count
    if interval == "year":
        return 12 * interval_count
    raise InvalidValue("interval is 'month' or 'year'", field="interval")


def add_months(anchor: datetime, months: int) -> datetime:
    """The anchor moved `months` later, its day clamped to the target month's last day."""
    month_index = anchor.month - 1 + months
    year = anchor.year + month_index // 12
    month = month_index % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def period_end(anchor: datetime, months_per_period: int, index: int) -> datetime:
    """End of the index-th period (0-based) counted from the anchor."""
    return add_months(anchor, months_per_period * (index + 1))


def trial_end(start: datetime, trial_days: int) -> datetime:
    if trial_days < 0:
        raise InvalidValue("trial_days cannot be negative", field="trial_days")
    return start + timedelta(days=trial_days)


def period_containing(
    anchor: datetime, months_per_period: int, moment: datetime
) -> tuple[datetime, datetime]:
    """The period [start, end) of the anchor's grid that holds `moment`: a pure function of the
    anchor and time, whatever renewals happen to be recorded. A moment before the anchor falls
    in the grid's first period."""
    if moment < anchor:
        return anchor, add_months(anchor, months_per_period)
    months_apart = (moment.year - anchor.year) * 12 + moment.month - anchor.month
    index = max(0, months_apart // months_per_period)
    start = add_months(anchor, months_per_period * index)
    # The estimate is off by one at most where a clamped day or the time of day moves the boundary.
    while start > moment:
        index -= 1
        start = add_months(anchor, months_per_period * index)
    end = add_months(anchor, months_per_period * (index + 1))
    while end <= moment:
        index += 1
        start, end = end, add_months(anchor, months_per_period * (index + 1))
    return start, end
