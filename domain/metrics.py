"""The exact definitions of SPEC section 4 as pure functions: what a subscription contributes to
MRR on each UTC day, a customer's MRR movements, receivables aging and usage quota states.

The read side folds stored facts through these functions; unit and property tests check them
without any I/O. "The end of day D" is just before midnight after D: a change at 10:00 on D
counts for D, a change at exactly 00:00 on D+1 counts from D+1."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from decimal import Decimal
from typing import Literal
from uuid import UUID

from domain.periods import BillingGrid, add_months

# ------------------------------------------------------------------------------- MRR

FactKind = Literal[
    "started", "trial_ended", "changed", "cancel_scheduled", "cancel_withdrawn", "canceled", "item"
]


@dataclass(frozen=True)
class SubscriptionFact:
    """One thing a subscription's event says about its MRR, in business time.

    `amount` is the monthly contribution (already rounded once) of the plan for `started` and
    `changed`, and of add-on item `item` for `item` (0 once it is removed); `at` is the trial end
    (`started`), the scheduled end (`cancel_scheduled`) or the end (`canceled`)."""

    position: int
    occurred_at: datetime
    kind: FactKind
    amount: int = 0
    at: datetime | None = None
    item: UUID | None = None  # the add-on item an `item` fact is about


@dataclass(frozen=True)
class Contribution:
    """A subscription's MRR as a step function of the day: `steps` are (first day, amount),
    sorted; it contributes only on days in [active_from, ends) (`ends` None: open)."""

    active_from: date
    ends: date | None
    steps: tuple[tuple[date, int], ...]

    def on(self, day: date) -> int:
        if day < self.active_from or (self.ends is not None and day >= self.ends):
            return 0
        amount = 0
        for first_day, value in self.steps:
            if first_day > day:
                break
            amount = value
        return amount

    def boundaries(self) -> set[date]:
        days = {self.active_from, *(d for d, _ in self.steps)}
        if self.ends is not None:
            days.add(self.ends)
        return days


def contribution(facts: Iterable[SubscriptionFact]) -> Contribution | None:
    """Fold a subscription's facts in business-time order (ties by log position).

    Trialing contributes nothing; the trial converts at trial_end whether or not the conversion
    was recorded (earlier if it was recorded earlier). Active and past_due contribute. A
    scheduled cancellation ends the contribution at the end of its period unless withdrawn; a
    cancellation ends it at its `ended_at`. Its amount is the plan's plus each add-on item's own
    (SPEC 10: every item rounded once, on its own)."""
    ordered = sorted(facts, key=lambda f: (f.occurred_at, f.position))
    started = next((f for f in ordered if f.kind == "started"), None)
    if started is None:
        return None
    converts: datetime | None = started.at
    ended: datetime | None = None
    scheduled: datetime | None = None
    steps: list[tuple[date, int]] = []
    plan_amount = 0
    item_amounts: dict[UUID | None, int] = {}
    for fact in ordered:
        day = fact.occurred_at.date()
        if fact.kind in ("started", "changed", "item"):
            if fact.kind == "item":
                item_amounts[fact.item] = fact.amount
            else:
                plan_amount = fact.amount
            if steps and steps[-1][0] >= day:
                steps = [s for s in steps if s[0] < day]
            steps.append((day, plan_amount + sum(item_amounts.values())))
        elif fact.kind == "trial_ended" and converts is not None:
            converts = min(converts, fact.occurred_at)
        elif fact.kind == "cancel_scheduled":
            scheduled = fact.at
        elif fact.kind == "cancel_withdrawn":
            scheduled = None
        elif fact.kind == "canceled":
            ended = fact.at or fact.occurred_at
    end = ended if ended is not None else scheduled
    active_from = (converts or started.occurred_at).date()
    return Contribution(active_from, end.date() if end is not None else None, tuple(steps))


def mrr_series(contributions: Sequence[Contribution]) -> list[tuple[date, int]]:
    """A customer's MRR (in one currency) at each day it changes: (day, MRR from that day on).
    Days where the total does not change are left out; the series starts from 0."""
    days = sorted(set().union(*(c.boundaries() for c in contributions))) if contributions else []
    series: list[tuple[date, int]] = []
    previous = 0
    for day in days:
        total = sum(c.on(day) for c in contributions)
        if total != previous:
            series.append((day, total))
            previous = total
    return series


MovementKind = Literal["new", "expansion", "contraction", "churn", "reactivation"]
MOVEMENT_KINDS: tuple[MovementKind, ...] = ("new", "expansion", "contraction", "churn", "reactivation")


@dataclass(frozen=True)
class Movement:
    day: date
    kind: MovementKind
    amount: int  # always positive
    mrr_before: int
    mrr_after: int


def classify(before: int, after: int, had_mrr_before: bool) -> MovementKind:
    if before == 0:
        return "reactivation" if had_mrr_before else "new"
    if after == 0:
        return "churn"
    return "expansion" if after > before else "contraction"


def movements(series: Sequence[tuple[date, int]]) -> list[Movement]:
    """The movement of each change of a customer's MRR: 0 → x is new the first time, then
    reactivation; up is expansion, down to a positive amount contraction, down to 0 churn."""
    result: list[Movement] = []
    before, had_mrr = 0, False
    for day, after in series:
        kind = classify(before, after, had_mrr)
        result.append(Movement(day, kind, abs(after - before), before, after))
        had_mrr = had_mrr or after > 0
        before = after
    return result


def net_change(kind: MovementKind, amount: int) -> int:
    return -amount if kind in ("contraction", "churn") else amount


# ------------------------------------------------------------------------------- receivables

AGING_BUCKETS = ("current", "1_30", "31_60", "61_90", "90_plus")


def aging_bucket(days_overdue: int) -> str:
    if days_overdue <= 0:
        return "current"
    if days_overdue <= 30:
        return "1_30"
    if days_overdue <= 60:
        return "31_60"
    if days_overdue <= 90:
        return "61_90"
    return "90_plus"


def rate(numerator: int, denominator: int) -> Decimal:
    """A churn rate as a decimal; a zero denominator gives 0."""
    if denominator == 0:
        return Decimal(0)
    return Decimal(numerator) / Decimal(denominator)


# ------------------------------------------------------------------------------- usage quotas

Aggregation = Literal["sum", "max", "last"]
QUOTA_THRESHOLDS = (80, 95, 100)
THRESHOLD_SEVERITY = {80: "medium", 95: "high", 100: "critical"}


@dataclass(frozen=True)
class UsageValue:
    occurred_at: datetime
    position: int
    value: Decimal


def aggregate_usage(values: Iterable[UsageValue], aggregation: str) -> Decimal:
    """`used` over a period's records: sum, max, or the value of the last by occurred_at."""
    records = list(values)
    if not records:
        return Decimal(0)
    if aggregation == "max":
        return max(r.value for r in records)
    if aggregation == "last":
        return max(records, key=lambda r: (r.occurred_at, r.position)).value
    return sum((r.value for r in records), Decimal(0))


def quota_state(used: Decimal, limit: Decimal) -> str:
    """ok below 80%, warning from 80%, critical from 95%, exceeded from 100%."""
    if limit <= 0:
        return "exceeded" if used > 0 else "ok"
    share = used / limit
    if share >= 1:
        return "exceeded"
    if share >= Decimal("0.95"):
        return "critical"
    if share >= Decimal("0.8"):
        return "warning"
    return "ok"


def thresholds_reached(used: Decimal, limit: Decimal) -> list[int]:
    if limit <= 0:
        return list(QUOTA_THRESHOLDS) if used > 0 else []
    return [t for t in QUOTA_THRESHOLDS if used * 100 >= limit * t]


def calendar_month(moment: datetime) -> tuple[datetime, datetime]:
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start, add_months(start, 1)


def usage_period_of(moment: datetime, grids: Sequence[BillingGrid]) -> tuple[datetime, datetime, str | None]:
    """The billing period a usage record at `moment` counts in (SPEC 4): the period, by its
    billing grid, of the subscription live at that moment (the latest started, if several);
    else the calendar month (UTC)."""
    live = [g for g in grids if g.live_at(moment)]
    if live:
        grid = max(live, key=lambda g: (g.started_at, g.subscription_id))
        start, end = grid.period_at(moment)
        return start, end, grid.subscription_id
    start, end = calendar_month(moment)
    return start, end, None


class UsagePeriods:
    """`usage_period_of` for many moments of one customer's grids, each answer computed once.

    The answer is a step function of the moment: which grids are live, which one wins, which of
    its segments applies and whether a trial holds change only at the grids' breakpoints (starts,
    ends, segment starts, trial ends, anchors), and between two breakpoints each moment maps to
    the period holding it. So an answer computed for one moment is the answer for any other
    moment of the same breakpoint interval that its period holds (and of the same time zone: a
    calendar month is taken in the moment's own zone). Answers are kept per breakpoint interval,
    time zone and calendar month (a month meets a few periods at most)."""

    __slots__ = ("_breaks", "_grids", "_known")

    def __init__(self, grids: Sequence[BillingGrid]) -> None:
        self._grids = grids
        breaks: set[datetime] = set()
        for grid in grids:
            breaks.add(grid.started_at)
            if grid.ended_at is not None:
                breaks.add(grid.ended_at)
            for segment in grid.segments:
                breaks.add(segment.effective_from)
                breaks.add(segment.anchor)
                if segment.trial_end is not None:
                    breaks.add(segment.trial_end)
        self._breaks = sorted(breaks)
        self._known: dict[
            tuple[int, tzinfo | None, int, int], list[tuple[datetime, datetime, str | None]]
        ] = {}

    def of(self, moment: datetime) -> tuple[datetime, datetime, str | None]:
        key = (bisect_right(self._breaks, moment), moment.tzinfo, moment.year, moment.month)
        known = self._known.get(key)
        if known is not None:
            for found in known:
                if found[0] <= moment < found[1]:
                    return found
        found = usage_period_of(moment, self._grids)
        # A period that does not hold its moment (one before a grid's anchor) is not reused.
        if found[0] <= moment < found[1]:
            self._known.setdefault(key, []).append(found)
        return found
