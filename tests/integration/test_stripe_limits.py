"""Stripe webhooks within the ledger's limits (SPEC section 5, "Limits that hold on every path"):
a signed event whose `created`, or any moment the ledger would record from its object, lies
outside [2000-01-01, now + 5 min], or whose amounts exceed what the ledger holds, is a 422
problem and records nothing, not even the event verbatim. A subscription that started long ago
records nothing in the future."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from domain import ids
from infra.bootstrap import CORE_PROJECTION, Container
from projections.policies import Policies, record_today
from projections.runner import head_position, wait_for_position
from tests.conftest import count_events
from tests.integration.stripe_helpers import (
    CURRENT_API,
    PRICE,
    current_lifecycle,
    current_payment_intent,
    current_subscription,
    customer,
    deliver,
    envelope,
    invoice_payment,
    lifecycle,
)

Y9999 = int(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp())
Y3000 = int(datetime(3000, 1, 1, tzinfo=UTC).timestamp())
Y1990 = int(datetime(1990, 1, 1, tzinfo=UTC).timestamp())
BEYOND_CALENDARS = 10**13  # no date holds it (year 318857)
FIXTURE_TIME = 1_234_567_890  # 2009-02-13T23:31:30Z: the timestamp of Stripe's API fixtures


def now() -> int:
    return int(time.time())


def refused(response: Any, code: str) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["type"].endswith(f"/{code}")
    assert problem["errors"][0]["field"]
    return problem


# ---------------------------------------------------------------------------- time


@pytest.mark.parametrize("created", [Y9999, BEYOND_CALENDARS, -(10**12), Y1990], ids=str)
def test_a_stripe_event_created_outside_the_window_is_422_time_out_of_range_and_records_nothing(
    stripe: TestClient, stripe_container: Container, created: int
) -> None:
    event = envelope(
        f"evt_created_{created}", "customer.created", created, customer("cus_when", currency="eur")
    )
    before = count_events(stripe_container)
    problem = refused(deliver(stripe, event), "time_out_of_range")
    assert problem["errors"][0]["field"] == "created"
    assert count_events(stripe_container) == before


def _sub(**changes: Any) -> dict[str, Any]:
    obj = copy.deepcopy(lifecycle("limits")[2]["data"]["object"])  # active, quantity 2
    obj.update(changes)
    return obj


def _item(**changes: Any) -> dict[str, Any]:
    obj = current_subscription(
        "sub_limits", "cus_limits", status="active", quantity=2, period=(now() - 86_400, now() + 86_400 * 29)
    )
    obj["items"]["data"][0].update(changes)
    return obj


SUBSCRIPTIONS: dict[str, Callable[[], dict[str, Any]]] = {
    "start_date in 9999": lambda: _sub(start_date=Y9999, created=Y9999),
    "start_date in 3000": lambda: _sub(start_date=Y3000, created=Y3000),
    "start_date in 1990": lambda: _sub(start_date=Y1990, created=Y1990),
    "start_date beyond calendars": lambda: _sub(start_date=BEYOND_CALENDARS),
    "trial_end in 9999": lambda: _sub(status="trialing", trial_end=Y9999),
    "trial_end in 3000": lambda: _sub(status="trialing", trial_end=Y3000),
    "current_period_start in 9999": lambda: _sub(current_period_start=Y9999, current_period_end=Y9999),
    "item period in 9999": lambda: _item(current_period_start=Y9999, current_period_end=Y9999),
    "canceled_at in 9999": lambda: _sub(status="canceled", canceled_at=Y9999, ended_at=Y9999),
    "ended_at tomorrow": lambda: _sub(status="canceled", canceled_at=now(), ended_at=now() + 86_400),
}


@pytest.mark.parametrize("case", SUBSCRIPTIONS)
def test_a_signed_subscription_with_a_time_outside_the_window_is_422_and_records_nothing(
    stripe: TestClient, stripe_container: Container, case: str
) -> None:
    event = envelope(f"evt_sub_{hash(case)}", "customer.subscription.created", now(), SUBSCRIPTIONS[case]())
    before = count_events(stripe_container)
    refused(deliver(stripe, event), "time_out_of_range")
    assert count_events(stripe_container) == before


def _invoice(**transitions: Any) -> dict[str, Any]:
    obj = copy.deepcopy(lifecycle("limits")[5]["data"]["object"])  # paid
    obj["status_transitions"].update(transitions)
    return obj


OBJECTS: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {
    "invoice created in 9999": ("invoice.created", lambda: {**_invoice(), "created": Y9999}),
    "invoice paid_at in 9999": ("invoice.paid", lambda: _invoice(paid_at=Y9999)),
    "invoice finalized before 2000": ("invoice.finalized", lambda: _invoice(finalized_at=Y1990)),
    "invoice due in 9999": ("invoice.finalized", lambda: {**_invoice(), "due_date": Y9999}),
    "invoice due in 3000": ("invoice.finalized", lambda: {**_invoice(), "due_date": Y3000}),
    "payment intent created in 9999": (
        "payment_intent.succeeded",
        lambda: current_payment_intent("pi_when", "cus_when", created=Y9999, succeeded=True),
    ),
    "charge created beyond calendars": (
        "charge.refunded",
        lambda: {
            "id": "ch_when",
            "object": "charge",
            "amount": 100,
            "amount_refunded": 100,
            "created": BEYOND_CALENDARS,
            "currency": "eur",
            "customer": "cus_when",
            "payment_intent": None,
        },
    ),
    "invoice payment paid in 9999": (
        "invoice_payment.paid",
        lambda: invoice_payment("inpay_when", "in_when", "pi_when", created=now(), paid_at=Y9999),
    ),
    "customer created in 9999": ("customer.created", lambda: {**customer("cus_when"), "created": Y9999}),
}


@pytest.mark.parametrize("case", OBJECTS)
def test_a_signed_object_with_a_time_outside_the_window_is_422_and_records_nothing(
    stripe: TestClient, stripe_container: Container, case: str
) -> None:
    kind, build = OBJECTS[case]
    event = envelope(f"evt_obj_{hash(case)}", kind, now(), build(), api_version=CURRENT_API)
    before = count_events(stripe_container)
    refused(deliver(stripe, event), "time_out_of_range")
    assert count_events(stripe_container) == before


# ---------------------------------------------------------------------------- amounts


def _priced(**price: Any) -> dict[str, Any]:
    obj = _sub()
    obj["items"]["data"][0]["price"] = {**PRICE, **price, "id": f"price_{hash(str(price))}"}
    return obj


AMOUNTS: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {
    "price of 10^16": ("customer.subscription.created", lambda: _priced(unit_amount=10**16)),
    "interval_count of a million": (
        "customer.subscription.created",
        lambda: _priced(recurring={**PRICE["recurring"], "interval_count": 10**6}),  # type: ignore[dict-item]
    ),
    "quantity of 10^10": (
        "customer.subscription.created",
        lambda: _sub(quantity=10**10) | {"items": _qty(10**10)},
    ),
    "10^7 × 10^9 a month": (
        "customer.subscription.created",
        lambda: _priced(unit_amount=10**7) | {"items": _qty(10**9, unit_amount=10**7)},
    ),
    "invoice total of 10^16": ("invoice.finalized", lambda: {**_invoice(), "total": 10**16}),
    "payment intent of 2^64": (
        "payment_intent.succeeded",
        lambda: current_payment_intent("pi_big", "cus_big", created=now(), succeeded=True, amount=2**64),
    ),
    "invoice payment of 10^16": (
        "invoice_payment.paid",
        lambda: invoice_payment("inpay_big", "in_big", "pi_big", created=now(), paid_at=now(), amount=10**16),
    ),
}


def _qty(quantity: int, **price: Any) -> dict[str, Any]:
    items: dict[str, Any] = copy.deepcopy((_priced(**price) if price else _sub())["items"])
    items["data"][0]["quantity"] = quantity
    return items


@pytest.mark.parametrize("case", AMOUNTS)
def test_a_signed_object_with_amounts_beyond_the_ledgers_limits_is_422_and_records_nothing(
    stripe: TestClient, stripe_container: Container, case: str
) -> None:
    kind, build = AMOUNTS[case]
    event = envelope(f"evt_amount_{hash(case)}", kind, now(), build())
    before = count_events(stripe_container)
    problem = refused(deliver(stripe, event), "invalid_value")
    assert "10^" in problem["detail"] or "36" in problem["detail"]
    assert count_events(stripe_container) == before


# ---------------------------------------------------------------------------- long ago


def fixture_subscription() -> dict[str, Any]:
    """Stripe's API fixture of a subscription (stripe-mock, fixtures3.json): every timestamp
    is 1234567890, so it started on 2009-02-13 and is still active."""
    return {
        "id": "sub_1MoqxHLgUG5tbmjcG8lOfx2N",
        "object": "subscription",
        "application": None,
        "billing_cycle_anchor": FIXTURE_TIME,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": FIXTURE_TIME,
        "collection_method": "charge_automatically",
        "created": FIXTURE_TIME,
        "currency": "usd",
        "current_period_end": FIXTURE_TIME,
        "current_period_start": FIXTURE_TIME,
        "customer": "cus_NZbFQAsc0ptasX",
        "ended_at": FIXTURE_TIME,
        "items": {
            "data": [
                {
                    "created": 1_679_588_735,
                    "id": "si_Na0zOJYhm6UPMj",
                    "metadata": {},
                    "object": "subscription_item",
                    "price": {
                        "active": True,
                        "billing_scheme": "per_unit",
                        "created": 1_679_492_997,
                        "currency": "usd",
                        "id": "price_1MoS37LgUG5tbmjcCA3GTNX8",
                        "livemode": False,
                        "nickname": None,
                        "object": "price",
                        "product": "prod_NZbFOV0OmNHxwl",
                        "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed"},
                        "type": "recurring",
                        "unit_amount": 2000,
                        "unit_amount_decimal": "2000",
                    },
                    "quantity": 1,
                    "subscription": "sub_1MoqxHLgUG5tbmjcG8lOfx2N",
                }
            ],
            "has_more": False,
            "object": "list",
            "url": "/v1/subscription_items?subscription=sub_1MoqxHLgUG5tbmjcG8lOfx2N",
        },
        "latest_invoice": None,
        "livemode": False,
        "metadata": {},
        "start_date": FIXTURE_TIME,
        "status": "active",
        "trial_end": FIXTURE_TIME,
        "trial_start": FIXTURE_TIME,
    }


def latest_occurred_at(container: Container) -> datetime:
    with container.pool.connection() as conn:
        row: Any = conn.execute("SELECT max(occurred_at) AS t FROM ledger_events").fetchone()
    latest: datetime = row["t"]
    return latest


def test_a_stripe_subscription_started_in_2009_records_nothing_in_the_future(
    stripe: TestClient, stripe_container: Container
) -> None:
    response = deliver(
        stripe, envelope("evt_fixture_2009", "customer.subscription.created", now(), fixture_subscription())
    )
    assert response.status_code == 200, response.text
    sub = stripe_container.ledger.repository.get(ids.stripe_object_id("sub_1MoqxHLgUG5tbmjcG8lOfx2N"))
    assert sub.started_at == datetime.fromtimestamp(FIXTURE_TIME, UTC)  # its real start, not the delivery
    assert latest_occurred_at(stripe_container) <= stripe_container.ledger.now()


def test_a_2009_subscription_whose_current_period_starts_after_the_ledgers_now_records_no_renewal(
    stripe: TestClient, stripe_container: Container
) -> None:
    """A Stripe test clock may run ahead of the ledger: its subscription then says its current
    period started after the ledger's now. Renewing up to it recorded 240 monthly renewals from
    2009, the last ones in the future; it is refused instead, and nothing is recorded."""
    obj = fixture_subscription()
    ahead = now() + 2 * 366 * 86_400
    obj.update(
        current_period_start=ahead, current_period_end=ahead + 31 * 86_400, canceled_at=None, ended_at=None
    )
    before = count_events(stripe_container)
    response = deliver(stripe, envelope("evt_fixture_ahead", "customer.subscription.created", now(), obj))
    problem = refused(response, "time_out_of_range")
    assert problem["errors"][0]["field"] == "subscription.current_period_start"
    assert count_events(stripe_container) == before == 0


def test_a_stripe_subscription_started_in_2009_records_nothing_in_the_future_once_the_clock_ran(
    stripe_live: TestClient, stripe_live_container: Container
) -> None:
    container = stripe_live_container
    response = deliver(
        stripe_live,
        envelope("evt_fixture_clock", "customer.subscription.created", now(), fixture_subscription()),
    )
    assert response.status_code == 200, response.text
    policies = Policies(container.pool, container.ledger, CORE_PROJECTION)
    for _ in range(8):  # the daily clock, as often as it needs to catch up
        record_today(container.ledger, container.ledger.now().date())
        container.wake_projection()
        assert wait_for_position(container.pool, CORE_PROJECTION, head_position(container.pool), 30)
        policies.catch_up()
    assert latest_occurred_at(container) <= container.ledger.now()


def test_a_current_lifecycle_delivered_now_is_accepted_whole(
    stripe: TestClient, stripe_container: Container
) -> None:
    """The window refuses nothing Stripe really sends: a history from the past, delivered now."""
    for event in current_lifecycle("window", failed_first=True):
        assert deliver(stripe, event).status_code == 200
    assert stripe_container.ledger.repository.get(ids.stripe_object_id("pi_window")).status == "succeeded"


def test_a_trial_ending_in_two_weeks_is_accepted(stripe: TestClient, stripe_container: Container) -> None:
    start = now() - 60
    obj = _sub(
        status="trialing", start_date=start, created=start, trial_start=start, trial_end=start + 14 * 86_400
    )
    obj["id"] = "sub_trial_ahead"
    response = deliver(stripe, envelope("evt_trial_ahead", "customer.subscription.created", now(), obj))
    assert response.status_code == 200, response.text
    sub = stripe_container.ledger.repository.get(ids.stripe_object_id("sub_trial_ahead"))
    assert sub.status == "trialing"
    assert sub.trial_end > datetime.now(UTC) + timedelta(days=13)
