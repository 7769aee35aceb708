"""The ledger's clock as a domain rule: which transitions of a subscription are due by a moment,
recorded each at the moment it fell due; periods as a pure function of the billing anchor and
time, whatever renewals happen to be recorded already (SPEC 3, "The ledger's clock")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import ChangeOutOfOrder, InvalidValue
from domain.periods import add_months, period_containing
from domain.subscription import ACTIVE, CANCELED, TRIALING, Subscription
from tests.unit.factories import (
    T0,
    assert_rebuilds_identically,
    assert_refused,
    at,
    event_names,
    make_plan,
    start_subscription,
)


def state(sub: Subscription) -> dict[str, object]:
    """What the subscription knows, without its identity and library bookkeeping."""
    return {k: v for k, v in vars(sub).items() if k not in ("_id", "_created_on", "_modified_on")}


def occurred(sub: Subscription) -> list[tuple[str, datetime]]:
    return [(type(e).__name__, e.occurred_at) for e in sub.collect_events()]  # type: ignore[attr-defined]


# ---------------------------------------------------------------- periods from the anchor


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)),
    st.sampled_from([1, 2, 3, 6, 12, 24, 36]),
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3650)),
)
def test_the_period_holding_a_moment_is_on_the_anchors_grid_and_holds_it(
    anchor: datetime, months: int, after: timedelta
) -> None:
    moment = anchor + after
    start, end = period_containing(anchor, months, moment)
    assert start <= moment < end
    index = next(k for k in range(0, 200) if add_months(anchor, months * k) == start)
    assert end == add_months(anchor, months * (index + 1))


def test_periods_from_a_month_end_anchor_stay_clamped_to_each_month_end() -> None:
    anchor = at(2025, 1, 31, 9)
    assert period_containing(anchor, 1, at(2025, 3, 15)) == (at(2025, 2, 28, 9), at(2025, 3, 31, 9))
    assert period_containing(anchor, 1, at(2025, 3, 31, 8)) == (at(2025, 2, 28, 9), at(2025, 3, 31, 9))
    assert period_containing(anchor, 1, at(2025, 3, 31, 9)) == (at(2025, 3, 31, 9), at(2025, 4, 30, 9))


# ---------------------------------------------------------------- catching up


def test_a_backdated_trial_is_active_in_its_right_period_once_caught_up() -> None:
    started = at(2025, 1, 1)
    sub = start_subscription(make_plan(trial_days=14), occurred_at=started)
    sub.collect_events()
    sub.advance(started + timedelta(days=100))
    assert occurred(sub) == [
        ("TrialEnded", at(2025, 1, 15)),
        ("Renewed", at(2025, 2, 15)),
        ("Renewed", at(2025, 3, 15)),
    ]
    assert sub.status == ACTIVE
    assert (sub.current_period_start, sub.current_period_end) == (at(2025, 3, 15), at(2025, 4, 15))


def test_advancing_records_nothing_before_it_is_due_and_nothing_twice() -> None:
    sub = start_subscription()
    sub.collect_events()
    assert sub.advance(at(2025, 2, 27)) == 0
    assert sub.advance(at(2025, 2, 28)) == 1
    assert sub.advance(at(2025, 2, 28)) == 0
    assert event_names(sub) == ["Renewed"]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=400), min_size=1, max_size=8),
    st.sampled_from([0, 7, 30]),
    st.sampled_from([("month", 1), ("month", 3), ("year", 1)]),
)
def test_catching_up_at_once_or_in_steps_records_the_same_history(
    steps: list[int], trial_days: int, interval: tuple[str, int]
) -> None:
    plan = make_plan(trial_days=trial_days, interval=interval[0], interval_count=interval[1])
    customer = uuid4()
    at_once = start_subscription(plan, customer_id=customer)
    in_steps = start_subscription(plan, customer_id=customer)
    end = T0 + timedelta(days=sum(steps))
    at_once.advance(end)
    moment = T0
    for days in steps:
        moment += timedelta(days=days)
        in_steps.advance(moment)
    assert occurred(at_once) == occurred(in_steps)
    assert state(at_once) == state(in_steps)


def test_the_next_transition_is_the_trial_end_then_the_period_end_then_none() -> None:
    sub = start_subscription(make_plan(trial_days=14))
    assert sub.next_due_at == at(2025, 2, 14)
    sub.advance(at(2025, 2, 14))
    assert sub.next_due_at == at(2025, 3, 14)
    sub.schedule_cancellation(occurred_at=at(2025, 2, 20))
    assert sub.next_due_at == at(2025, 3, 14)
    sub.advance(at(2025, 3, 14))
    assert sub.status == CANCELED
    assert sub.next_due_at is None


# ---------------------------------------------------------------- backdated commands


def test_cancel_at_period_end_ends_the_period_holding_the_request_not_the_recorded_one() -> None:
    sub = start_subscription(occurred_at=at(2025, 1, 10))
    sub.advance(at(2025, 5, 1))  # renewals recorded up to [Apr 10, May 10)
    sub.collect_events()
    sub.schedule_cancellation(occurred_at=at(2025, 2, 20))
    assert sub.cancel_at == at(2025, 3, 10)
    sub.advance(at(2025, 5, 1))
    assert occurred(sub) == [("CancellationScheduled", at(2025, 2, 20)), ("Canceled", at(2025, 3, 10))]
    assert sub.ended_at == at(2025, 3, 10)


def test_cancel_at_period_end_during_a_trial_already_converted_by_the_clock_ends_it_at_the_trial_end() -> (
    None
):
    sub = start_subscription(make_plan(trial_days=14), occurred_at=at(2025, 1, 1))
    sub.advance(at(2025, 4, 1))
    sub.schedule_cancellation(occurred_at=at(2025, 1, 5))
    sub.advance(at(2025, 4, 1))
    assert sub.status == CANCELED
    assert sub.ended_at == at(2025, 1, 15)


def test_a_trial_canceled_at_period_end_is_canceled_at_its_end_when_the_clock_reaches_it() -> None:
    sub = start_subscription(make_plan(trial_days=14), occurred_at=at(2025, 1, 1))
    sub.schedule_cancellation(occurred_at=at(2025, 1, 5))
    sub.collect_events()
    sub.advance(at(2025, 1, 14))
    assert sub.status == TRIALING
    sub.advance(at(2025, 1, 15))
    assert occurred(sub) == [("Canceled", at(2025, 1, 15))]


def test_a_backdated_interval_change_restarts_the_cycle_and_the_clock_follows_the_new_anchor() -> None:
    sub = start_subscription(occurred_at=at(2025, 1, 10))
    sub.advance(at(2025, 6, 1))
    yearly = make_plan("pro-yearly", interval="year", amount=29000)
    sub.change(plan=yearly, quantity=None, occurred_at=at(2025, 2, 20))
    assert sub.billing_anchor == at(2025, 2, 20)
    sub.collect_events()
    assert sub.advance(at(2025, 6, 1)) == 0
    assert (sub.current_period_start, sub.current_period_end) == (at(2025, 2, 20), at(2026, 2, 20))
    sub.advance(at(2026, 3, 1))
    assert occurred(sub) == [("Renewed", at(2026, 2, 20))]


def test_a_quantity_change_backdated_before_recorded_renewals_keeps_the_recorded_period() -> None:
    sub = start_subscription(occurred_at=at(2025, 1, 10))
    sub.advance(at(2025, 6, 1))
    sub.change(plan=None, quantity=3, occurred_at=at(2025, 2, 20))
    assert (sub.current_period_start, sub.current_period_end) == (at(2025, 5, 10), at(2025, 6, 10))
    sub.collect_events()
    assert sub.advance(at(2025, 6, 1)) == 0


def test_a_change_cannot_take_effect_before_an_earlier_recorded_change() -> None:
    sub = start_subscription(occurred_at=at(2025, 1, 10))
    sub.change(plan=None, quantity=3, occurred_at=at(2025, 3, 1))
    error = assert_refused(
        sub, ChangeOutOfOrder, lambda: sub.change(plan=None, quantity=4, occurred_at=at(2025, 2, 1))
    )
    assert error.field == "effective_at"
    assert_refused(sub, ChangeOutOfOrder, lambda: sub.schedule_cancellation(occurred_at=at(2025, 2, 1)))
    assert_refused(sub, ChangeOutOfOrder, lambda: sub.cancel_now(occurred_at=at(2025, 2, 1)))


def test_a_change_before_the_subscription_started_is_refused() -> None:
    sub = start_subscription(occurred_at=at(2025, 1, 10))
    assert_refused(sub, InvalidValue, lambda: sub.cancel_now(occurred_at=at(2025, 1, 9)))


def test_a_caught_up_subscription_rebuilds_identically_from_its_events() -> None:
    sub = start_subscription(make_plan(trial_days=14), occurred_at=at(2025, 1, 31))
    sub.advance(at(2025, 5, 1))
    sub.change(plan=make_plan("pro-yearly", interval="year"), quantity=2, occurred_at=at(2025, 4, 2))
    sub.schedule_cancellation(occurred_at=at(2025, 4, 20))
    sub.advance(at(2026, 5, 1))
    copy = assert_rebuilds_identically(sub)
    assert copy.status == CANCELED
    assert copy.ended_at == at(2026, 4, 2)
