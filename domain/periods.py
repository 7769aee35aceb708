"""Billing periods: anniversary-based, clamped to the month's last day, as Stripe does.

Every boundary is computed from the anchor (Jan 31 → Feb 28 → Mar 31), never chained from the
previous boundary, so a short month does not shift later periods.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass, field
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


# ------------------------------------------------------------------ a subscription's billing grid

GridFactKind = Literal["started", "trial_ended", "changed", "canceled"]


@dataclass(frozen=True)
class GridFact:
    """What one subscription event says about its billing periods. `months` is the months per
    period after a start or change; `moment` the trial end (started) or the end (canceled)."""

    position: int
    occurred_at: datetime
    kind: GridFactKind
    months: int | None = None
    moment: datetime | None = None


@dataclass(frozen=True)
class GridSegment:
    """From `effective_from` on, periods run from `anchor` every `months` months, after the
    trial (if it ends later)."""

    effective_from: datetime
    anchor: datetime
    months: int
    trial_end: datetime | None


@dataclass
class BillingGrid:
    """A subscription's billing periods over its whole life, as a pure function of its facts and
    time: the trial, then anniversary periods from the billing anchor; a new interval restarts the
    cycle where it takes effect (within a trial, the periods after it follow the new interval
    from the trial's end). Whatever renewals happen to be recorded play no part."""

    subscription_id: str
    started_at: datetime
    segments: list[GridSegment] = field(default_factory=list)
    ended_at: datetime | None = None

    def live_at(self, moment: datetime) -> bool:
        return self.started_at <= moment and (self.ended_at is None or moment < self.ended_at)

    def period_at(self, moment: datetime) -> tuple[datetime, datetime]:
        segment = self.segments[0]
        for candidate in self.segments[1:]:
            if candidate.effective_from > moment:
                break
            segment = candidate
        if segment.trial_end is not None and moment < segment.trial_end:
            return self.started_at, segment.trial_end
        return period_containing(segment.anchor, segment.months, moment)


def billing_grid(subscription_id: str, facts: Iterable[GridFact]) -> BillingGrid | None:
    """Fold a subscription's facts in business-time order (ties by log position)."""
    grid: BillingGrid | None = None
    for fact in sorted(facts, key=lambda f: (f.occurred_at, f.position)):
        if fact.kind == "started" and fact.months is not None:
            anchor = fact.moment or fact.occurred_at
            grid = BillingGrid(subscription_id, fact.occurred_at)
            grid.segments.append(GridSegment(fact.occurred_at, anchor, fact.months, fact.moment))
            continue
        if grid is None:
            continue
        last = grid.segments[-1]
        at = fact.occurred_at
        if fact.kind == "trial_ended":
            grid.segments.append(GridSegment(at, at, last.months, at))
        elif fact.kind == "changed" and fact.months is not None and fact.months != last.months:
            in_trial = last.trial_end is not None and at < last.trial_end
            anchor = last.anchor if in_trial else at
            grid.segments.append(GridSegment(at, anchor, fact.months, last.trial_end))
        elif fact.kind == "canceled":
            grid.ended_at = fact.moment or at
    return grid
