from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import (
    CurrencyMismatch,
    InvalidTransition,
    InvalidValue,
    PlanRetired,
    SubscriptionCanceled,
)
from domain.periods import period_end
from domain.subscription import ACTIVE, CANCELED, PAST_DUE, TRIALING, Subscription
from tests.unit.factories import (
    T0,
    assert_rebuilds_identically,
    assert_refused,
    at,
    event_names,
    make_plan,
    plan_terms,
    start_subscription,
)

MID_PERIOD = at(2025, 2, 10)


def canceled_subscription() -> Subscription:
    sub = start_subscription()
    sub.cancel_now(occurred_at=MID_PERIOD)
    return sub


FAILED_INVOICE = uuid4()


def past_due_subscription() -> Subscription:
    sub = start_subscription()
    sub.mark_past_due(invoice_id=FAILED_INVOICE, occurred_at=MID_PERIOD)
    return sub


def trialing_subscription(trial_days: int = 14) -> Subscription:
    return start_subscription(make_plan(trial_days=trial_days))


# ---------------------------------------------------------------- start


def test_starting_without_a_trial_is_active_for_one_interval_from_the_start() -> None:
    customer_id = uuid4()
    plan = make_plan(amount=2900)
    sub = start_subscription(plan, quantity=3, customer_id=customer_id)
    assert event_names(sub) == ["Started"]
    assert sub.status == ACTIVE
    assert sub.customer_id == customer_id
    assert sub.owner_customer_id == customer_id
    assert (sub.plan_id, sub.plan_code) == (plan.id, "pro")
    assert (sub.currency, sub.amount, sub.interval, sub.interval_count) == ("EUR", 2900, "month", 1)
    assert sub.quantity == 3
    assert sub.trial_end is None
    assert sub.started_at == T0
    assert (sub.current_period_start, sub.current_period_end) == (T0, at(2025, 2, 28))
    assert sub.billing_anchor == T0
    assert not sub.cancel_at_period_end
    assert sub.canceled_at is None
    assert sub.ended_at is None


def test_a_plan_with_trial_days_starts_trialing_until_trial_end() -> None:
    sub = trialing_subscription(14)
    assert event_names(sub) == ["Started"]
    assert sub.status == TRIALING
    assert sub.trial_end == at(2025, 2, 14)
    assert (sub.current_period_start, sub.current_period_end) == (T0, at(2025, 2, 14))
    assert sub.billing_anchor == at(2025, 2, 14)


def test_explicit_trial_days_override_the_plan() -> None:
    plan = make_plan(trial_days=14)
    assert start_subscription(plan, trial_days=0).status == ACTIVE
    longer = start_subscription(plan, trial_days=30)
    assert longer.status == TRIALING
    assert longer.trial_end == at(2025, 3, 2)
    assert start_subscription(make_plan(trial_days=0), trial_days=7).status == TRIALING


def test_a_yearly_subscription_runs_twelve_months_from_its_start() -> None:
    sub = start_subscription(make_plan(interval="year"), occurred_at=at(2024, 2, 29))
    assert sub.current_period_end == at(2025, 2, 28)


def test_the_subscription_keeps_the_terms_it_started_under_when_the_plan_is_revised() -> None:
    plan = make_plan(amount=2900)
    sub = start_subscription(plan)
    plan.revise(occurred_at=MID_PERIOD, **plan_terms(amount=9900))
    assert sub.amount == 2900


@pytest.mark.parametrize("quantity", [0, -1])
def test_starting_with_a_quantity_below_one_is_refused(quantity: int) -> None:
    with pytest.raises(InvalidValue) as caught:
        start_subscription(quantity=quantity)
    assert caught.value.field == "quantity"


def test_starting_with_negative_trial_days_is_refused() -> None:
    with pytest.raises(InvalidValue) as caught:
        start_subscription(trial_days=-1)
    assert caught.value.field == "trial_days"


def test_starting_on_a_retired_plan_is_refused() -> None:
    plan = make_plan()
    plan.retire(occurred_at=T0)
    with pytest.raises(PlanRetired):
        start_subscription(plan)


# ---------------------------------------------------------------- trial


def test_trial_converts_at_trial_end() -> None:
    sub = trialing_subscription(14)
    sub.collect_events()
    sub.end_trial()
    assert event_names(sub) == ["TrialEnded"]
    assert sub.status == ACTIVE
    assert sub.trial_end == at(2025, 2, 14)
    assert (sub.current_period_start, sub.current_period_end) == (at(2025, 2, 14), at(2025, 3, 14))
    assert sub.billing_anchor == at(2025, 2, 14)


def test_a_trial_ended_early_anchors_billing_at_that_moment() -> None:
    sub = trialing_subscription(14)
    sub.end_trial(occurred_at=at(2025, 2, 5, 9))
    assert sub.status == ACTIVE
    assert sub.trial_end == at(2025, 2, 5, 9)
    assert (sub.current_period_start, sub.current_period_end) == (
        at(2025, 2, 5, 9),
        at(2025, 3, 5, 9),
    )


def test_ending_a_trial_that_does_not_exist_is_refused() -> None:
    sub = start_subscription()
    assert_refused(sub, InvalidTransition, sub.end_trial)


def test_ending_a_trial_twice_is_refused() -> None:
    sub = trialing_subscription()
    sub.end_trial()
    assert_refused(sub, InvalidTransition, sub.end_trial)


def test_ending_the_trial_of_a_canceled_subscription_is_refused() -> None:
    sub = trialing_subscription()
    sub.cancel_now(occurred_at=at(2025, 2, 1))
    assert_refused(sub, InvalidTransition, sub.end_trial)


def test_a_trial_set_to_cancel_at_its_end_does_not_convert() -> None:
    sub = trialing_subscription(14)
    sub.schedule_cancellation(occurred_at=at(2025, 2, 3))
    assert_refused(sub, InvalidTransition, sub.end_trial)
    sub.advance(at(2025, 3, 1))
    assert event_names(sub) == ["Canceled"]
    assert sub.status == CANCELED
    assert sub.ended_at == at(2025, 2, 14)


# ---------------------------------------------------------------- renew


def test_renewing_starts_the_next_period_at_the_end_of_the_current_one() -> None:
    sub = start_subscription()
    sub.collect_events()
    sub.renew(now=at(2025, 2, 28))
    (renewed,) = sub.collect_events()
    assert type(renewed).__name__ == "Renewed"
    assert renewed.occurred_at == at(2025, 2, 28)  # type: ignore[attr-defined]
    assert (sub.current_period_start, sub.current_period_end) == (at(2025, 2, 28), at(2025, 3, 31))


def test_renewals_follow_the_anchor_day_clamped_to_each_month_end() -> None:
    sub = start_subscription(occurred_at=at(2025, 1, 31))
    ends = [sub.current_period_end]
    for _ in range(4):
        sub.advance(sub.current_period_end)
        ends.append(sub.current_period_end)
    assert ends == [at(2025, 2, 28), at(2025, 3, 31), at(2025, 4, 30), at(2025, 5, 31), at(2025, 6, 30)]


def test_a_renewal_recorded_late_occurs_when_it_fell_due() -> None:
    sub = start_subscription()
    sub.collect_events()
    sub.advance(at(2025, 3, 1, 2))
    (renewed,) = sub.collect_events()
    assert renewed.occurred_at == at(2025, 2, 28)  # type: ignore[attr-defined]
    assert sub.current_period_start == at(2025, 2, 28)


def test_a_past_due_subscription_still_renews() -> None:
    sub = past_due_subscription()
    sub.advance(at(2025, 3, 1))
    assert sub.status == PAST_DUE
    assert sub.current_period_end == at(2025, 3, 31)


def test_renewing_a_trialing_subscription_is_refused() -> None:
    sub = trialing_subscription()
    assert_refused(sub, InvalidTransition, lambda: sub.renew(now=at(2025, 2, 1)))


def test_renewing_a_subscription_set_to_cancel_is_refused() -> None:
    sub = start_subscription()
    sub.schedule_cancellation(occurred_at=MID_PERIOD)
    assert_refused(sub, InvalidTransition, lambda: sub.renew(now=at(2025, 3, 1)))


def test_renewing_a_canceled_subscription_is_refused() -> None:
    sub = canceled_subscription()
    assert_refused(sub, SubscriptionCanceled, lambda: sub.renew(now=at(2025, 3, 1)))


@settings(deadline=None, max_examples=50)
@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    st.sampled_from([("month", 1), ("month", 3), ("month", 6), ("year", 1)]),
    st.integers(min_value=1, max_value=30),
)
def test_renewed_periods_are_contiguous_and_computed_from_the_anchor(
    start: datetime, interval: tuple[str, int], renewals: int
) -> None:
    plan = make_plan(interval=interval[0], interval_count=interval[1])
    sub = start_subscription(plan, occurred_at=start)
    months = plan.months_per_period
    for index in range(1, renewals + 1):
        previous_end = sub.current_period_end
        sub.advance(previous_end)
        assert sub.current_period_start == previous_end
        assert sub.current_period_end == period_end(start, months, index)
        assert sub.current_period_end > sub.current_period_start


# ---------------------------------------------------------------- change


def test_changing_the_quantity_keeps_the_current_period() -> None:
    sub = start_subscription()
    sub.collect_events()
    assert sub.change(plan=None, quantity=5, occurred_at=MID_PERIOD) is True
    assert event_names(sub) == ["Changed"]
    assert sub.quantity == 5
    assert (sub.current_period_start, sub.current_period_end) == (T0, at(2025, 2, 28))


def test_changing_to_a_plan_with_the_same_interval_keeps_the_billing_cycle() -> None:
    sub = start_subscription()
    sub.advance(at(2025, 3, 10))
    premium = make_plan("premium", amount=9900, name="Premium")
    assert sub.change(plan=premium, quantity=None, occurred_at=at(2025, 3, 10))
    assert (sub.plan_id, sub.plan_code, sub.amount) == (premium.id, "premium", 9900)
    assert (sub.current_period_start, sub.current_period_end) == (at(2025, 2, 28), at(2025, 3, 31))
    sub.advance(at(2025, 3, 31))
    assert sub.current_period_end == at(2025, 4, 30)


def test_changing_the_interval_restarts_the_billing_cycle() -> None:
    sub = start_subscription()
    yearly = make_plan("pro-yearly", interval="year", amount=29000)
    assert sub.change(plan=yearly, quantity=2, occurred_at=MID_PERIOD)
    assert (sub.interval, sub.amount, sub.quantity) == ("year", 29000, 2)
    assert (sub.current_period_start, sub.current_period_end) == (MID_PERIOD, at(2026, 2, 10))
    assert sub.billing_anchor == MID_PERIOD
    sub.advance(at(2026, 2, 10))
    assert (sub.current_period_start, sub.current_period_end) == (at(2026, 2, 10), at(2027, 2, 10))


def test_an_interval_change_at_the_exact_period_start_restarts_the_cycle_from_there() -> None:
    sub = start_subscription(occurred_at=at(2025, 1, 31))
    sub.advance(at(2025, 2, 28))  # [Feb 28, Mar 31], counted from the Jan 31 anchor
    yearly = make_plan("pro-yearly", interval="year")
    sub.change(plan=yearly, quantity=None, occurred_at=sub.current_period_start)
    assert (sub.current_period_start, sub.current_period_end) == (at(2025, 2, 28), at(2026, 2, 28))
    sub.advance(at(2026, 2, 28))
    assert (sub.current_period_start, sub.current_period_end) == (at(2026, 2, 28), at(2027, 2, 28))


def test_changing_the_interval_during_a_trial_keeps_the_trial_period() -> None:
    sub = trialing_subscription(14)
    yearly = make_plan("pro-yearly", interval="year")
    sub.change(plan=yearly, quantity=None, occurred_at=at(2025, 2, 5))
    assert sub.status == TRIALING
    assert (sub.current_period_start, sub.current_period_end) == (T0, at(2025, 2, 14))
    sub.end_trial()
    assert (sub.current_period_start, sub.current_period_end) == (at(2025, 2, 14), at(2026, 2, 14))


def test_a_change_that_changes_nothing_records_nothing() -> None:
    plan = make_plan()
    sub = start_subscription(plan, quantity=2)
    sub.collect_events()
    assert sub.change(plan=None, quantity=None, occurred_at=MID_PERIOD) is False
    assert sub.change(plan=plan, quantity=2, occurred_at=MID_PERIOD) is False
    assert sub.collect_events() == []


def test_a_revised_plan_is_a_change_even_under_the_same_code() -> None:
    plan = make_plan(amount=2900)
    sub = start_subscription(plan)
    plan.revise(occurred_at=T0, **plan_terms(amount=3900))
    sub.collect_events()
    assert sub.change(plan=plan, quantity=None, occurred_at=MID_PERIOD)
    assert event_names(sub) == ["Changed"]
    assert sub.amount == 3900


@pytest.mark.parametrize("quantity", [0, -3])
def test_changing_to_a_quantity_below_one_is_refused(quantity: int) -> None:
    sub = start_subscription()
    error = assert_refused(
        sub, InvalidValue, lambda: sub.change(plan=None, quantity=quantity, occurred_at=MID_PERIOD)
    )
    assert error.field == "quantity"


def test_changing_to_a_retired_plan_is_refused() -> None:
    sub = start_subscription()
    retired = make_plan("legacy")
    retired.retire(occurred_at=T0)
    assert_refused(sub, PlanRetired, lambda: sub.change(plan=retired, quantity=None, occurred_at=MID_PERIOD))


def test_changing_to_a_plan_in_another_currency_is_refused() -> None:
    sub = start_subscription()
    dollars = make_plan("pro-usd", currency="USD")
    error = assert_refused(
        sub, CurrencyMismatch, lambda: sub.change(plan=dollars, quantity=None, occurred_at=MID_PERIOD)
    )
    assert error.field == "plan_code"


def test_changing_a_canceled_subscription_is_refused() -> None:
    sub = canceled_subscription()
    assert_refused(
        sub, SubscriptionCanceled, lambda: sub.change(plan=None, quantity=2, occurred_at=MID_PERIOD)
    )


# ---------------------------------------------------------------- past due / recover


def test_a_failed_payment_makes_an_active_subscription_past_due() -> None:
    sub = start_subscription()
    sub.collect_events()
    invoice_id = uuid4()
    sub.mark_past_due(invoice_id=invoice_id, occurred_at=MID_PERIOD)
    assert event_names(sub) == ["PastDue"]
    assert sub.status == PAST_DUE
    assert sub.past_due_invoice_ids == [str(invoice_id)]


def test_paying_the_invoice_recovers_a_past_due_subscription() -> None:
    sub = past_due_subscription()
    sub.collect_events()
    sub.recover(invoice_id=FAILED_INVOICE, occurred_at=at(2025, 2, 12))
    assert event_names(sub) == ["Recovered"]
    assert sub.status == ACTIVE
    assert sub.past_due_invoice_ids == []


def test_a_subscription_stays_past_due_until_every_failed_invoice_is_paid() -> None:
    sub = past_due_subscription()
    second = uuid4()
    sub.mark_past_due(invoice_id=second, occurred_at=at(2025, 2, 20))
    sub.collect_events()
    sub.recover(invoice_id=FAILED_INVOICE, occurred_at=at(2025, 2, 21))
    assert event_names(sub) == ["PastDueInvoiceSettled"]
    assert sub.status == PAST_DUE
    sub.recover(invoice_id=second, occurred_at=at(2025, 2, 22))
    assert event_names(sub) == ["Recovered"]
    assert sub.status == ACTIVE


def test_the_same_failed_invoice_does_not_make_it_past_due_twice() -> None:
    sub = past_due_subscription()
    assert_refused(
        sub, InvalidTransition, lambda: sub.mark_past_due(invoice_id=FAILED_INVOICE, occurred_at=MID_PERIOD)
    )


def test_paying_an_invoice_that_was_not_past_due_does_not_recover() -> None:
    sub = past_due_subscription()
    assert_refused(sub, InvalidTransition, lambda: sub.recover(invoice_id=uuid4(), occurred_at=MID_PERIOD))


@pytest.mark.parametrize("make", [trialing_subscription, canceled_subscription])
def test_only_an_active_or_past_due_subscription_becomes_past_due(make: object) -> None:
    sub = make()  # type: ignore[operator]
    assert_refused(
        sub, InvalidTransition, lambda: sub.mark_past_due(invoice_id=uuid4(), occurred_at=MID_PERIOD)
    )


@pytest.mark.parametrize("make", [start_subscription, trialing_subscription, canceled_subscription])
def test_recovering_a_subscription_that_is_not_past_due_is_refused(make: object) -> None:
    sub = make()  # type: ignore[operator]
    assert_refused(sub, InvalidTransition, lambda: sub.recover(invoice_id=uuid4(), occurred_at=MID_PERIOD))


# ---------------------------------------------------------------- cancellation


def test_scheduling_a_cancellation_keeps_the_subscription_until_period_end() -> None:
    sub = start_subscription()
    sub.collect_events()
    sub.schedule_cancellation(occurred_at=MID_PERIOD)
    (scheduled,) = sub.collect_events()
    assert type(scheduled).__name__ == "CancellationScheduled"
    assert scheduled.ends_at == at(2025, 2, 28)  # type: ignore[attr-defined]
    assert sub.status == ACTIVE
    assert sub.cancel_at_period_end
    assert sub.canceled_at == MID_PERIOD
    assert sub.ended_at is None


def test_a_scheduled_cancellation_ends_the_subscription_at_the_period_end() -> None:
    sub = start_subscription()
    sub.schedule_cancellation(occurred_at=MID_PERIOD)
    sub.collect_events()
    sub.end_at_period_end(now=at(2025, 3, 5))
    (canceled,) = sub.collect_events()
    assert type(canceled).__name__ == "Canceled"
    assert canceled.occurred_at == at(2025, 2, 28)  # type: ignore[attr-defined]
    assert sub.status == CANCELED
    assert sub.ended_at == at(2025, 2, 28)
    assert sub.canceled_at == MID_PERIOD
    assert not sub.cancel_at_period_end


def test_withdrawing_a_scheduled_cancellation_keeps_the_subscription() -> None:
    sub = start_subscription()
    sub.schedule_cancellation(occurred_at=MID_PERIOD)
    sub.collect_events()
    sub.withdraw_cancellation(occurred_at=at(2025, 2, 11))
    assert event_names(sub) == ["CancellationWithdrawn"]
    assert not sub.cancel_at_period_end
    assert sub.canceled_at is None
    sub.advance(at(2025, 3, 1))
    assert sub.status == ACTIVE
    assert sub.current_period_start == at(2025, 2, 28)


def test_cancelling_now_ends_the_subscription_at_effective_at() -> None:
    sub = start_subscription()
    sub.collect_events()
    sub.cancel_now(occurred_at=MID_PERIOD)
    assert event_names(sub) == ["Canceled"]
    assert sub.status == CANCELED
    assert sub.canceled_at == sub.ended_at == MID_PERIOD


def test_cancelling_now_after_scheduling_keeps_the_request_time() -> None:
    sub = start_subscription()
    sub.schedule_cancellation(occurred_at=MID_PERIOD)
    sub.cancel_now(occurred_at=at(2025, 2, 20))
    assert sub.status == CANCELED
    assert sub.canceled_at == MID_PERIOD
    assert sub.ended_at == at(2025, 2, 20)
    assert not sub.cancel_at_period_end


def test_a_trial_canceled_first_never_converts() -> None:
    sub = trialing_subscription()
    sub.cancel_now(occurred_at=at(2025, 2, 1))
    assert sub.status == CANCELED
    assert sub.ended_at == at(2025, 2, 1)


@pytest.mark.parametrize("make", [trialing_subscription, past_due_subscription])
def test_a_trialing_or_past_due_subscription_can_be_canceled_now(make: object) -> None:
    sub = make()  # type: ignore[operator]
    sub.cancel_now(occurred_at=at(2025, 2, 12))
    assert sub.status == CANCELED


def test_cancelling_a_canceled_subscription_is_refused() -> None:
    sub = canceled_subscription()
    error = assert_refused(sub, SubscriptionCanceled, lambda: sub.cancel_now(occurred_at=at(2025, 2, 20)))
    assert error.code == "subscription_canceled"


def test_scheduling_the_cancellation_of_a_canceled_subscription_is_refused() -> None:
    sub = canceled_subscription()
    assert_refused(sub, SubscriptionCanceled, lambda: sub.schedule_cancellation(occurred_at=at(2025, 2, 20)))


def test_scheduling_a_cancellation_twice_is_refused() -> None:
    sub = start_subscription()
    sub.schedule_cancellation(occurred_at=MID_PERIOD)
    assert_refused(sub, InvalidTransition, lambda: sub.schedule_cancellation(occurred_at=at(2025, 2, 20)))
    assert sub.canceled_at == MID_PERIOD


def test_withdrawing_when_no_cancellation_is_scheduled_is_refused() -> None:
    sub = start_subscription()
    assert_refused(sub, InvalidTransition, lambda: sub.withdraw_cancellation(occurred_at=MID_PERIOD))


def test_withdrawing_the_cancellation_of_a_canceled_subscription_is_refused() -> None:
    sub = canceled_subscription()
    assert_refused(sub, SubscriptionCanceled, lambda: sub.withdraw_cancellation(occurred_at=MID_PERIOD))


def test_ending_at_period_end_without_a_scheduled_cancellation_is_refused() -> None:
    sub = start_subscription()
    assert_refused(sub, InvalidTransition, lambda: sub.end_at_period_end(now=at(2025, 3, 1)))


def test_ending_a_canceled_subscription_at_period_end_is_refused() -> None:
    sub = start_subscription()
    sub.schedule_cancellation(occurred_at=MID_PERIOD)
    sub.end_at_period_end(now=at(2025, 3, 1))
    assert_refused(sub, SubscriptionCanceled, lambda: sub.end_at_period_end(now=at(2025, 3, 1)))


# ---------------------------------------------------------------- history


def test_a_subscription_rebuilt_from_its_events_has_the_same_state() -> None:
    sub = trialing_subscription(14)
    sub.end_trial()
    sub.change(plan=None, quantity=4, occurred_at=at(2025, 2, 20))
    sub.advance(at(2025, 3, 14))
    failed_invoice = uuid4()
    sub.mark_past_due(invoice_id=failed_invoice, occurred_at=at(2025, 3, 16))
    sub.recover(invoice_id=failed_invoice, occurred_at=at(2025, 3, 18))
    sub.change(plan=make_plan("pro-yearly", interval="year"), quantity=None, occurred_at=at(2025, 3, 20))
    sub.schedule_cancellation(occurred_at=at(2025, 4, 1))
    sub.withdraw_cancellation(occurred_at=at(2025, 4, 2))
    sub.schedule_cancellation(occurred_at=at(2025, 4, 3))
    sub.advance(at(2026, 6, 1))
    copy = assert_rebuilds_identically(sub)
    assert copy.status == CANCELED
    assert copy.ended_at == at(2026, 3, 20)
    assert copy.billing_anchor == at(2025, 3, 20)


def test_a_period_cannot_be_renewed_before_it_ends() -> None:
    sub = start_subscription()
    assert_refused(sub, InvalidTransition, lambda: sub.renew(now=MID_PERIOD))


def test_a_scheduled_cancellation_cannot_be_carried_out_early() -> None:
    sub = start_subscription()
    sub.schedule_cancellation(occurred_at=MID_PERIOD)
    assert_refused(sub, InvalidTransition, lambda: sub.end_at_period_end(now=MID_PERIOD))


def test_a_canceled_subscription_has_no_past_due_invoices_left() -> None:
    sub = past_due_subscription()
    sub.cancel_now(occurred_at=MID_PERIOD)
    assert sub.past_due_invoice_ids == []
