"""The definitions of SPEC section 4 as pure functions: no I/O."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.metrics import (
    SubscriptionFact,
    UsagePeriods,
    UsageValue,
    aggregate_usage,
    aging_bucket,
    classify,
    contribution,
    movements,
    mrr_series,
    net_change,
    quota_state,
    thresholds_reached,
    usage_period_of,
)
from domain.periods import GridFact, billing_grid
from domain.rules import monthly_recurring_amount
from projections.usage import usage_periods


def at(day: int, hour: int = 10, month: int = 1) -> datetime:
    return datetime(2025, month, day, hour, tzinfo=UTC)


def test_a_yearly_plan_of_2000_contributes_166_67_rounded_half_even_once() -> None:
    assert monthly_recurring_amount(200000, 1, "year", 1) == 16667
    # Quantity multiplies before the single division: 3 × 2,000.00 / 12 = 500.00 exactly.
    assert monthly_recurring_amount(200000, 3, "year", 1) == 50000
    assert monthly_recurring_amount(1000, 1, "month", 3) == 333


def test_monthly_and_yearly_subscriptions_add_up_on_a_day() -> None:
    monthly = contribution([SubscriptionFact(1, at(1), "started", 2000)])
    yearly = contribution([SubscriptionFact(2, at(3), "started", 16667)])
    assert monthly and yearly
    assert mrr_series([monthly, yearly]) == [(date(2025, 1, 1), 2000), (date(2025, 1, 3), 18667)]


def test_trialing_contributes_nothing_until_trial_end_recorded_or_not() -> None:
    unrecorded = contribution([SubscriptionFact(1, at(1), "started", 2000, at=at(15, 9))])
    assert unrecorded is not None
    assert unrecorded.on(date(2025, 1, 14)) == 0
    assert unrecorded.on(date(2025, 1, 15)) == 2000
    converted_early = contribution(
        [SubscriptionFact(1, at(1), "started", 2000, at=at(15)), SubscriptionFact(2, at(5), "trial_ended")]
    )
    assert converted_early is not None
    assert converted_early.on(date(2025, 1, 5)) == 2000


def test_a_trial_canceled_before_its_end_never_contributes() -> None:
    c = contribution(
        [
            SubscriptionFact(1, at(1), "started", 2000, at=at(15)),
            SubscriptionFact(2, at(3), "canceled", at=at(3)),
        ]
    )
    assert c is not None
    assert mrr_series([c]) == []


def test_cancel_at_period_end_counts_until_the_end_and_withdrawing_keeps_it() -> None:
    facts = [
        SubscriptionFact(1, at(1), "started", 2000),
        SubscriptionFact(2, at(10), "cancel_scheduled", at=at(1, month=2)),
    ]
    scheduled = contribution(facts)
    assert scheduled is not None
    assert scheduled.on(date(2025, 1, 31)) == 2000
    assert scheduled.on(date(2025, 2, 1)) == 0
    withdrawn = contribution([*facts, SubscriptionFact(3, at(12), "cancel_withdrawn")])
    assert withdrawn is not None
    assert withdrawn.on(date(2025, 3, 1)) == 2000


def test_past_due_still_counts_because_only_cancellation_ends_a_contribution() -> None:
    c = contribution([SubscriptionFact(1, at(1), "started", 2000)])
    assert c is not None
    assert c.on(date(2026, 1, 1)) == 2000


def test_each_of_the_five_movements() -> None:
    assert classify(0, 100, had_mrr_before=False) == "new"
    assert classify(0, 100, had_mrr_before=True) == "reactivation"
    assert classify(100, 150, had_mrr_before=True) == "expansion"
    assert classify(150, 50, had_mrr_before=True) == "contraction"
    assert classify(50, 0, had_mrr_before=True) == "churn"
    series = [(date(2025, 1, d), v) for d, v in ((1, 100), (2, 150), (3, 50), (4, 0), (5, 80))]
    assert [(m.kind, m.amount) for m in movements(series)] == [
        ("new", 100),
        ("expansion", 50),
        ("contraction", 100),
        ("churn", 50),
        ("reactivation", 80),
    ]


def test_a_backdated_change_the_same_day_as_another_keeps_the_later_one() -> None:
    c = contribution(
        [
            SubscriptionFact(1, at(1), "started", 1000),
            SubscriptionFact(3, at(5, 18), "changed", 3000),
            SubscriptionFact(2, at(5, 9), "changed", 2000),
        ]
    )
    assert c is not None
    assert c.on(date(2025, 1, 5)) == 3000


fact_kinds = st.sampled_from(["changed", "cancel_scheduled", "cancel_withdrawn", "canceled", "trial_ended"])


@st.composite
def subscription_histories(draw: st.DrawFn) -> list[SubscriptionFact]:
    start = draw(st.integers(0, 60))
    base = datetime(2025, 1, 1, tzinfo=UTC)
    trial = draw(st.one_of(st.none(), st.integers(1, 20)))
    facts = [
        SubscriptionFact(
            1,
            base + timedelta(days=start, hours=draw(st.integers(0, 23))),
            "started",
            draw(st.integers(1, 10**6)),
            at=base + timedelta(days=start + trial) if trial else None,
        )
    ]
    for position in range(2, draw(st.integers(2, 8))):
        offset = draw(st.integers(start, start + 120))
        kind = draw(fact_kinds)
        facts.append(
            SubscriptionFact(
                position,
                base + timedelta(days=offset, hours=draw(st.integers(0, 23))),
                kind,
                draw(st.integers(1, 10**6)) if kind == "changed" else 0,
                at=base + timedelta(days=offset + draw(st.integers(0, 40))),
            )
        )
    return facts


@settings(max_examples=300, deadline=None)
@given(st.lists(subscription_histories(), min_size=1, max_size=4))
def test_mrr_of_every_day_is_the_previous_day_plus_its_movements(
    histories: list[list[SubscriptionFact]],
) -> None:
    contributions = [c for h in histories if (c := contribution(h)) is not None]
    moved = {m.day: m for m in movements(mrr_series(contributions))}
    first = date(2024, 12, 31)
    mrr = 0
    for offset in range(400):
        day = first + timedelta(days=offset)
        if day in moved:
            mrr += net_change(moved[day].kind, moved[day].amount)
        assert mrr == sum(c.on(day) for c in contributions), day
        assert mrr >= 0


def test_aging_buckets_follow_days_overdue() -> None:
    assert [aging_bucket(d) for d in (-3, 0, 1, 30, 31, 60, 61, 90, 91)] == [
        "current",
        "current",
        "1_30",
        "1_30",
        "31_60",
        "31_60",
        "61_90",
        "61_90",
        "90_plus",
    ]


def test_usage_aggregations_and_quota_states() -> None:
    values = [
        UsageValue(at(3), 1, Decimal(5)),
        UsageValue(at(1), 2, Decimal(9)),
        UsageValue(at(2), 3, Decimal(2)),
    ]
    assert aggregate_usage(values, "sum") == 16
    assert aggregate_usage(values, "max") == 9
    assert aggregate_usage(values, "last") == 5  # the latest by occurred_at, not by arrival
    assert [quota_state(Decimal(u), Decimal(100)) for u in (79, 80, 95, 100, 130)] == [
        "ok",
        "warning",
        "critical",
        "exceeded",
        "exceeded",
    ]
    assert thresholds_reached(Decimal(96), Decimal(100)) == [80, 95]


def test_a_record_counts_in_its_subscriptions_period_whatever_renewals_are_recorded() -> None:
    grid = billing_grid("s", [GridFact(1, at(10, 0), "started", months=1)])
    assert grid is not None
    assert usage_period_of(at(20), [grid])[:2] == (at(10, 0), at(10, 0, month=2))
    assert usage_period_of(at(12, month=3), [grid]) == (at(10, 0, month=3), at(10, 0, month=4), "s")


_MOMENTS = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.sampled_from([UTC])
)
_GRID_FACTS = st.lists(
    st.tuples(
        st.sampled_from(["s1", "s2", "s3"]),
        _MOMENTS,
        st.sampled_from(["started", "trial_ended", "changed", "canceled"]),
        st.sampled_from([1, 3, 12]),
        st.one_of(st.none(), _MOMENTS),
    ),
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(facts=_GRID_FACTS, moments=st.lists(_MOMENTS, max_size=40))
def test_usage_periods_answers_as_usage_period_of_for_every_moment(
    facts: list[tuple[str, datetime, str, int, datetime | None]], moments: list[datetime]
) -> None:
    by_subscription: dict[str, list[GridFact]] = {}
    for position, (subscription, occurred_at, kind, months, moment) in enumerate(facts, 1):
        by_subscription.setdefault(subscription, []).append(
            GridFact(position, occurred_at, kind, months, moment)  # type: ignore[arg-type]
        )
    grids = [g for s, f in by_subscription.items() if (g := billing_grid(s, f)) is not None]
    # Moments near the grids' own boundaries as well, where a cached answer could go wrong.
    near = [
        m + d
        for g in grids
        for m in (g.started_at, *(s.anchor for s in g.segments))
        for d in (
            timedelta(0),
            timedelta(microseconds=-1),
            timedelta(days=31),
            timedelta(days=31, microseconds=-1),
        )
    ]
    periods = UsagePeriods(grids)
    shared = usage_periods(grids)  # kept across examples: equal grids share their answers
    for moment in [*moments, *near, *moments]:
        assert periods.of(moment) == shared.of(moment) == usage_period_of(moment, grids)


def test_a_record_after_the_subscription_ended_counts_in_its_calendar_month() -> None:
    ended = billing_grid(
        "s", [GridFact(1, at(10, 0), "started", months=1), GridFact(2, at(1, 0, month=2), "canceled")]
    )
    assert ended is not None
    assert usage_period_of(at(12, month=3), [ended]) == (at(1, 0, month=3), at(1, 0, month=4), None)


def test_a_trial_is_a_period_and_the_periods_after_it_run_from_its_end() -> None:
    grid = billing_grid("s", [GridFact(1, at(1, 0), "started", months=1, moment=at(15, 0))])
    assert grid is not None
    assert grid.period_at(at(3)) == (at(1, 0), at(15, 0))
    assert grid.period_at(at(20)) == (at(15, 0), at(15, 0, month=2))


def test_an_interval_change_restarts_the_periods_where_it_takes_effect() -> None:
    grid = billing_grid(
        "s",
        [
            GridFact(1, at(10, 0), "started", months=1),
            GridFact(5, at(20, 0, month=2), "changed", months=12),
            GridFact(3, at(10, 0, month=2), "changed", months=1),  # a quantity change: same grid
        ],
    )
    assert grid is not None
    assert grid.period_at(at(15, month=2)) == (at(10, 0, month=2), at(10, 0, month=3))
    assert grid.period_at(at(15, month=4)) == (at(20, 0, month=2), datetime(2026, 2, 20, 0, tzinfo=UTC))


def test_an_interval_change_during_a_trial_keeps_the_trial_and_runs_from_its_end() -> None:
    grid = billing_grid(
        "s",
        [
            GridFact(1, at(1, 0), "started", months=1, moment=at(15, 0)),
            GridFact(2, at(15, 0), "trial_ended"),
            GridFact(3, at(5, 0), "changed", months=12),  # recorded after the conversion, effective before
        ],
    )
    assert grid is not None
    assert grid.period_at(at(10)) == (at(1, 0), at(15, 0))
    assert grid.period_at(at(20, month=6)) == (at(15, 0), datetime(2026, 1, 15, 0, tzinfo=UTC))
