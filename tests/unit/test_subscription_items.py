"""Add-on items on a subscription (SPEC 10): what may be added, changed and removed, the events
that say so, and what billing owes for them part-way through a period (SPEC 7, proration by the
second, as for a change of plan)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import pytest

from domain import ids
from domain.errors import (
    ChangeOutOfOrder,
    CurrencyMismatch,
    IntervalMismatch,
    InvalidValue,
    ItemExists,
    PlanRetired,
    SubscriptionCanceled,
    UnknownItem,
)
from domain.invoicing import FeeTerms, fee_line
from domain.metrics import SubscriptionFact, contribution
from domain.subscription import MAX_ITEMS, Subscription
from tests.unit.factories import (
    assert_rebuilds_identically,
    assert_refused,
    at,
    event_names,
    make_plan,
    start_subscription,
)

MARCH = at(2025, 3, 1)  # a period of 31 days: [Mar 1, Apr 1)
HALFWAY = at(2025, 3, 16, 12)
THREE_QUARTERS = datetime.fromisoformat("2025-03-24T06:00:00+00:00")
STORAGE = make_plan("storage-10gb", name="Extra storage 10 GB", amount=1000)


def billed_in_march(plan_amount: int = 2900) -> Subscription:
    """A monthly subscription started on March 1st whose first period was invoiced (as the
    billing engine records it), with nothing pending."""
    sub = start_subscription(occurred_at=MARCH)
    sub.record_invoice(
        invoice_id=uuid4(),
        finalize_at=MARCH,
        fee={
            "period_start": MARCH.isoformat(),
            "period_end": at(2025, 4, 1).isoformat(),
            "amount": plan_amount,
            "terms": "Pro × 1",
            "items": {},
        },
        used_pending=False,
        used_discount=False,
        occurred_at=MARCH,
    )
    sub.collect_events()
    return sub


def amounts(lines: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(line["description"], line["amount"]) for line in lines]


# ---------------------------------------------------------------- adding


def test_an_add_on_is_added_with_its_plan_terms_under_an_id_derived_from_the_subscription() -> None:
    sub = start_subscription(occurred_at=MARCH)
    sub.collect_events()
    item_id = sub.add_item(plan=STORAGE, quantity=2, occurred_at=HALFWAY)
    assert item_id == ids.subscription_item_id(sub.id, 1)
    assert event_names(sub) == ["ItemAdded"]
    item = sub.check_item(item_id)
    assert (item["plan_code"], item["name"], item["amount"], item["quantity"]) == (
        "storage-10gb",
        "Extra storage 10 GB",
        1000,
        2,
    )
    assert (item["interval"], item["interval_count"], item["added_at"]) == ("month", 1, HALFWAY)
    assert sub.last_changed_at == HALFWAY


def test_the_item_events_rebuild_the_same_subscription() -> None:
    sub = start_subscription(occurred_at=MARCH)
    first = sub.add_item(plan=STORAGE, quantity=2, occurred_at=HALFWAY)
    sub.change_item_quantity(item_id=first, quantity=3, occurred_at=THREE_QUARTERS)
    sub.add_item(plan=make_plan("cpu", amount=500), quantity=1, occurred_at=THREE_QUARTERS)
    sub.remove_item(item_id=first, occurred_at=THREE_QUARTERS)
    copy_ = assert_rebuilds_identically(sub)
    assert [i["plan_code"] for i in copy_.items.values()] == ["cpu"]


def test_an_add_on_removed_and_bought_again_is_a_new_item() -> None:
    sub = start_subscription(occurred_at=MARCH)
    first = sub.add_item(plan=STORAGE, quantity=1, occurred_at=MARCH)
    sub.remove_item(item_id=first, occurred_at=HALFWAY)
    again = sub.add_item(plan=STORAGE, quantity=1, occurred_at=HALFWAY)
    assert again != first
    assert list(sub.items) == [str(again)]


@pytest.mark.parametrize(
    ("plan", "error", "field"),
    [
        (make_plan("storage-usd", currency="USD", amount=1000), CurrencyMismatch, "plan_code"),
        (make_plan("storage-yearly", interval="year", amount=10000), IntervalMismatch, "plan_code"),
        (make_plan("pro"), ItemExists, "plan_code"),  # the subscription's own plan
    ],
)
def test_an_add_on_in_another_currency_interval_or_the_plan_itself_is_refused(
    plan: Any, error: type[Exception], field: str
) -> None:
    sub = start_subscription(occurred_at=MARCH)
    refused = assert_refused(sub, error, lambda: sub.add_item(plan=plan, quantity=1, occurred_at=HALFWAY))
    assert refused.field == field


def test_the_same_add_on_twice_is_refused_its_quantity_is_changed_instead() -> None:
    sub = start_subscription(occurred_at=MARCH)
    sub.add_item(plan=STORAGE, quantity=1, occurred_at=MARCH)
    assert_refused(sub, ItemExists, lambda: sub.add_item(plan=STORAGE, quantity=1, occurred_at=HALFWAY))


@pytest.mark.parametrize("quantity", [0, -1])
def test_a_quantity_below_one_is_refused(quantity: int) -> None:
    sub = start_subscription(occurred_at=MARCH)
    refused = assert_refused(
        sub, InvalidValue, lambda: sub.add_item(plan=STORAGE, quantity=quantity, occurred_at=HALFWAY)
    )
    assert refused.field == "quantity"
    item = sub.add_item(plan=STORAGE, quantity=1, occurred_at=HALFWAY)
    assert_refused(
        sub,
        InvalidValue,
        lambda: sub.change_item_quantity(item_id=item, quantity=quantity, occurred_at=HALFWAY),
    )


def test_nothing_is_added_to_a_canceled_subscription() -> None:
    sub = start_subscription(occurred_at=MARCH)
    item = sub.add_item(plan=STORAGE, quantity=1, occurred_at=MARCH)
    sub.cancel_now(occurred_at=HALFWAY)
    assert_refused(
        sub,
        SubscriptionCanceled,
        lambda: sub.add_item(plan=make_plan("cpu"), quantity=1, occurred_at=HALFWAY),
    )
    assert_refused(
        sub,
        SubscriptionCanceled,
        lambda: sub.change_item_quantity(item_id=item, quantity=2, occurred_at=HALFWAY),
    )
    assert_refused(sub, SubscriptionCanceled, lambda: sub.remove_item(item_id=item, occurred_at=HALFWAY))


def test_a_retired_add_on_is_refused() -> None:
    retired = make_plan("legacy-ram", amount=700)
    retired.retire(occurred_at=MARCH)
    sub = start_subscription(occurred_at=MARCH)
    assert_refused(sub, PlanRetired, lambda: sub.add_item(plan=retired, quantity=1, occurred_at=HALFWAY))


def test_an_unknown_item_is_refused_by_name() -> None:
    sub = start_subscription(occurred_at=MARCH)
    unknown = uuid4()
    assert_refused(sub, UnknownItem, lambda: sub.remove_item(item_id=unknown, occurred_at=HALFWAY))
    assert_refused(
        sub, UnknownItem, lambda: sub.change_item_quantity(item_id=unknown, quantity=2, occurred_at=HALFWAY)
    )
    removed = sub.add_item(plan=STORAGE, quantity=1, occurred_at=MARCH)
    sub.remove_item(item_id=removed, occurred_at=MARCH)
    assert_refused(sub, UnknownItem, lambda: sub.remove_item(item_id=removed, occurred_at=HALFWAY))


def test_an_item_cannot_take_effect_before_the_last_change() -> None:
    sub = start_subscription(occurred_at=MARCH)
    sub.change(plan=None, quantity=2, occurred_at=HALFWAY)
    assert_refused(sub, ChangeOutOfOrder, lambda: sub.add_item(plan=STORAGE, quantity=1, occurred_at=MARCH))


def test_a_subscription_carries_at_most_twenty_items() -> None:
    sub = start_subscription(occurred_at=MARCH)
    for n in range(MAX_ITEMS):
        sub.add_item(plan=make_plan(f"addon-{n}", amount=100), quantity=1, occurred_at=MARCH)
    refused = assert_refused(
        sub, InvalidValue, lambda: sub.add_item(plan=make_plan("one-more"), quantity=1, occurred_at=MARCH)
    )
    assert refused.field == "plan_code"


def test_a_plan_of_another_interval_or_an_items_own_is_refused_while_items_are_on() -> None:
    sub = start_subscription(occurred_at=MARCH)
    sub.add_item(plan=STORAGE, quantity=1, occurred_at=MARCH)
    yearly = make_plan("pro-yearly", interval="year", amount=29000)
    assert_refused(sub, IntervalMismatch, lambda: sub.change(plan=yearly, quantity=None, occurred_at=HALFWAY))
    assert_refused(sub, ItemExists, lambda: sub.change(plan=STORAGE, quantity=None, occurred_at=HALFWAY))
    assert sub.change(plan=make_plan("pro-plus", amount=4900), quantity=None, occurred_at=HALFWAY)


# ---------------------------------------------------------------- proration


def test_an_item_added_halfway_through_a_billed_period_is_charged_for_the_remaining_half() -> None:
    sub = billed_in_march()
    sub.add_item(plan=STORAGE, quantity=2, occurred_at=HALFWAY)
    [line] = sub.pending_items
    assert (line["description"], line["amount"]) == ("Remaining time on Extra storage 10 GB × 2", 1000)
    assert (line["period_start"], line["period_end"]) == (HALFWAY.isoformat(), "2025-04-01T00:00:00+00:00")
    assert line["source"]["item_id"] == str(ids.subscription_item_id(sub.id, 1))


def test_an_item_removed_later_in_the_period_is_credited_its_unused_time() -> None:
    sub = billed_in_march()
    item = sub.add_item(plan=STORAGE, quantity=2, occurred_at=HALFWAY)
    sub.remove_item(item_id=item, occurred_at=THREE_QUARTERS)
    assert amounts(sub.pending_items) == [
        ("Remaining time on Extra storage 10 GB × 2", 1000),
        ("Unused time on Extra storage 10 GB × 2", -500),
    ]


def test_an_item_quantity_change_credits_the_old_and_charges_the_new_terms() -> None:
    sub = billed_in_march()
    item = sub.add_item(plan=STORAGE, quantity=1, occurred_at=MARCH, proration_behavior="none")
    assert sub.pending_items == []
    assert not sub.change_item_quantity(item_id=item, quantity=1, occurred_at=HALFWAY)
    assert sub.change_item_quantity(item_id=item, quantity=3, occurred_at=HALFWAY)
    # Added without proration, nothing was billed for it in March: only the new terms are charged.
    assert amounts(sub.pending_items) == [("Remaining time on Extra storage 10 GB × 3", 1500)]
    assert sub.change_item_quantity(item_id=item, quantity=2, occurred_at=THREE_QUARTERS)
    assert amounts(sub.pending_items)[1:] == [
        ("Unused time on Extra storage 10 GB × 3", -750),
        ("Remaining time on Extra storage 10 GB × 2", 500),
    ]


def test_without_proration_an_item_owes_nothing_until_the_next_period() -> None:
    sub = billed_in_march()
    item = sub.add_item(plan=STORAGE, quantity=2, occurred_at=HALFWAY, proration_behavior="none")
    sub.remove_item(item_id=item, occurred_at=THREE_QUARTERS, proration_behavior="none")
    assert sub.pending_items == []


def test_an_item_added_in_a_trial_owes_nothing_until_the_trial_ends() -> None:
    sub = start_subscription(make_plan(trial_days=14), occurred_at=MARCH)
    sub.add_item(plan=STORAGE, quantity=1, occurred_at=at(2025, 3, 5))
    assert sub.pending_items == []


def test_canceling_now_credits_the_plan_and_every_item() -> None:
    sub = billed_in_march(plan_amount=2000)
    sub.add_item(plan=STORAGE, quantity=1, occurred_at=MARCH)
    sub.cancel_now(occurred_at=HALFWAY)
    assert amounts(sub.pending_items) == [
        ("Remaining time on Extra storage 10 GB × 1", 1000),
        ("Unused time on Pro × 1", -1000),
        ("Unused time on Extra storage 10 GB × 1", -500),
    ]


# ---------------------------------------------------------------- billing and MRR


def test_an_item_fee_line_names_its_item_and_has_an_id_of_its_own() -> None:
    invoice_id, sub_id, item_id = uuid4(), uuid4(), uuid4()
    plan_line = fee_line(invoice_id, FeeTerms(sub_id, "pro", "Pro", 2900, 1), MARCH, at(2025, 4, 1))
    item_line = fee_line(
        invoice_id,
        FeeTerms(sub_id, "storage-10gb", "Extra storage 10 GB", 1000, 3, item_id),
        MARCH,
        at(2025, 4, 1),
    )
    assert item_line.line_id != plan_line.line_id
    assert (item_line.kind, item_line.description, item_line.amount) == (
        "fee",
        "Extra storage 10 GB × 3",
        3000,
    )
    assert item_line.source == {
        "subscription_id": str(sub_id),
        "plan_code": "storage-10gb",
        "item_id": str(item_id),
    }


def test_each_item_adds_its_own_monthly_amount_to_the_subscriptions_mrr() -> None:
    storage, cpu = UUID(int=1), UUID(int=2)
    facts = [
        SubscriptionFact(1, at(2025, 3, 1), "started", 2900),
        SubscriptionFact(2, at(2025, 3, 10, 9), "item", 1000, item=storage),
        SubscriptionFact(3, at(2025, 3, 12), "item", 333, item=cpu),
        SubscriptionFact(4, at(2025, 3, 20), "item", 2000, item=storage),  # its quantity doubled
        SubscriptionFact(5, at(2025, 3, 25), "changed", 4900),
        SubscriptionFact(6, at(2025, 3, 28), "item", 0, item=storage),  # removed
    ]
    c = contribution(facts)
    assert c is not None
    by_day = {day: c.on(at(2025, 3, day).date()) for day in (9, 10, 12, 20, 25, 28)}
    assert by_day == {9: 2900, 10: 3900, 12: 4233, 20: 5233, 25: 7233, 28: 5233}


def test_items_of_a_trial_count_from_its_conversion_and_stop_at_cancellation() -> None:
    addon = UUID(int=1)
    c = contribution(
        [
            SubscriptionFact(1, at(2025, 3, 1), "started", 2900, at=at(2025, 3, 15)),
            SubscriptionFact(2, at(2025, 3, 5), "item", 1000, item=addon),
            SubscriptionFact(3, at(2025, 4, 2), "canceled", at=at(2025, 4, 2)),
        ]
    )
    assert c is not None
    assert [c.on(at(2025, m, d).date()) for m, d in ((3, 5), (3, 15), (4, 1), (4, 2))] == [0, 3900, 3900, 0]
