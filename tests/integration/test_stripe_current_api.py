"""Stripe webhooks of the current API versions (2025-03-31 and later, SPEC section 5 "Stripe
webhooks"): an invoice names its subscription under `parent.subscription_details`, and only an
`invoice_payment` links an invoice to the PaymentIntent that paid it. One real charge is one
payment, keyed by the PaymentIntent, whatever the order in which its events arrive."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import ids
from infra.bootstrap import Container
from tests.conftest import bearer
from tests.integration.stripe_helpers import (
    current_lifecycle,
    deliver,
    ledger_state,
    lifecycle,
)

# Indexes into current_lifecycle(suffix) (without the declined charge).
SETUP = range(4)  # customer, subscription created and updated, invoice finalized
CHARGE = {"payment_intent.succeeded": 4, "invoice_payment.paid": 5, "invoice.paid": 6}


def payments_of(container: Container, stripe_customer: str) -> list[Any]:
    """Every payment the ledger holds for a customer, from the log itself."""
    with container.pool.connection() as conn:
        rows: Any = conn.execute(
            "SELECT DISTINCT stream_id FROM events WHERE type = 'Payment.Initiated' AND customer_id = %s",
            (ids.customer_id(stripe_customer),),
        ).fetchall()
    return [container.ledger.repository.get(row["stream_id"]) for row in rows]


def test_a_current_invoice_keeps_its_subscription_and_a_declined_charge_makes_it_past_due(
    stripe: TestClient, stripe_container: Container
) -> None:
    events = current_lifecycle("pastdue", failed_first=True)
    for event in events[:6]:  # ... invoice.finalized, payment_intent.payment_failed, invoice.payment_failed
        assert deliver(stripe, event).json()["status"] == "accepted"
    get = stripe_container.ledger.repository.get
    invoice = get(ids.stripe_object_id("in_pastdue"))
    sub = get(ids.stripe_object_id("sub_pastdue"))
    assert invoice.subscription_id == sub.id
    assert (sub.status, sub.past_due_invoice_ids) == ("past_due", [str(invoice.id)])
    (declined,) = payments_of(stripe_container, "cus_pastdue")
    assert (declined.id, declined.status, declined.failure_code) == (
        ids.stripe_object_id("pi_pastdue"),
        "failed",
        "insufficient_funds",
    )

    for event in events[6:10]:  # the retry succeeds: the charge's four events
        assert deliver(stripe, event).status_code == 200
    sub = get(ids.stripe_object_id("sub_pastdue"))
    invoice = get(ids.stripe_object_id("in_pastdue"))
    assert sub.status == "active"
    assert (invoice.status, invoice.amount_paid, invoice.tax, invoice.total) == ("paid", 4800, 800, 4800)
    (payment,) = payments_of(stripe_container, "cus_pastdue")
    assert (payment.status, payment.amount, payment.attempt, payment.invoice_id) == (
        "succeeded",
        4800,
        2,
        invoice.id,
    )


@pytest.mark.parametrize(
    "order", list(itertools.permutations(CHARGE)), ids=lambda order: " then ".join(order)
)
def test_one_real_charge_is_one_payment_whichever_of_its_events_arrives_first(
    stripe: TestClient, stripe_container: Container, order: tuple[str, ...]
) -> None:
    suffix = "charge" + "".join(str(CHARGE[kind]) for kind in order)
    events = current_lifecycle(suffix)
    for n in [*SETUP, *(CHARGE[kind] for kind in order)]:
        assert deliver(stripe, events[n]).status_code == 200
    (payment,) = payments_of(stripe_container, f"cus_{suffix}")
    invoice = stripe_container.ledger.repository.get(ids.stripe_object_id(f"in_{suffix}"))
    assert payment.id == ids.stripe_object_id(f"pi_{suffix}")
    assert (payment.status, payment.amount, payment.provider_reference, payment.invoice_id) == (
        "succeeded",
        4800,
        f"pi_{suffix}",
        invoice.id,
    )
    assert (invoice.status, invoice.amount_paid, invoice.amount_remaining) == ("paid", 4800, 0)


def test_an_invoice_reported_paid_before_its_invoice_payment_waits_for_it_rather_than_inventing_a_payment(
    stripe: TestClient, stripe_container: Container
) -> None:
    events = current_lifecycle("waits")
    for n in [*SETUP, CHARGE["invoice.paid"]]:
        deliver(stripe, events[n])
    assert payments_of(stripe_container, "cus_waits") == []
    invoice = stripe_container.ledger.repository.get(ids.stripe_object_id("in_waits"))
    assert invoice.status == "open"
    deliver(stripe, events[CHARGE["invoice_payment.paid"]])
    assert stripe_container.ledger.repository.get(ids.stripe_object_id("in_waits")).status == "paid"
    assert len(payments_of(stripe_container, "cus_waits")) == 1


def test_an_older_invoice_and_an_invoice_payment_for_the_same_charge_make_one_payment(
    stripe: TestClient, stripe_container: Container
) -> None:
    """A webhook endpoint on an older API version may also receive `invoice_payment.paid`."""
    old = lifecycle("mixed")
    for event in old[:4]:  # customer, subscription, invoice finalized (naming pi_mixed)
        deliver(stripe, event)
    link = current_lifecycle("mixed")[CHARGE["invoice_payment.paid"]]
    deliver(stripe, link)
    paid = copy.deepcopy(old[5])
    paid["data"]["object"]["attempt_count"] = 1
    deliver(stripe, paid)
    (payment,) = payments_of(stripe_container, "cus_mixed")
    assert (payment.id, payment.status, payment.amount) == (
        ids.stripe_object_id("pi_mixed"),
        "succeeded",
        4800,
    )


def test_lifetime_value_counts_one_real_charge_once(
    stripe_live: TestClient, stripe_live_container: Container
) -> None:
    position = 0
    for event in current_lifecycle("ltv")[:-1]:
        response = deliver(stripe_live, event)
        assert response.status_code == 200, response.text
        position = max(position, response.json()["position"])
    _, raw = stripe_live_container.keys.mint(role="read", name="finance")
    customer_id = ids.customer_id("cus_ltv")
    answer = stripe_live.get(f"/v1/customers/{customer_id}?min_position={position}", headers=bearer(raw))
    assert answer.status_code == 200, answer.text
    assert answer.json()["lifetime_value"] == 4800
    listed = stripe_live.get(
        f"/v1/payments?customer_id={customer_id}&min_position={position}", headers=bearer(raw)
    ).json()["data"]
    assert [(p["id"], p["invoice_id"], p["status"]) for p in listed] == [
        (str(ids.stripe_object_id("pi_ltv")), str(ids.stripe_object_id("in_ltv")), "succeeded")
    ]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(range(9)), redelivered=st.lists(st.integers(0, 8), max_size=2))
def test_any_order_of_delivery_of_a_current_lifecycle_gives_the_same_final_state(
    stripe: TestClient, stripe_container: Container, order: list[int], redelivered: list[int]
) -> None:
    if not hasattr(stripe_container, "_current_state"):
        for event in current_lifecycle("cbase"):
            deliver(stripe, event)
        stripe_container._current_state = ledger_state(stripe_container, "cbase")  # type: ignore[attr-defined]
    suffix = f"c{abs(hash((tuple(order), tuple(redelivered)))) % 10**12}"
    if stripe_container.ledger.store.position_of(ids.stripe_event_id(f"evt_{suffix}_1")) is not None:
        return  # hypothesis tried this very case already
    events = current_lifecycle(suffix)
    for index in [*order, *redelivered]:
        assert deliver(stripe, copy.deepcopy(events[index])).status_code == 200
    assert ledger_state(stripe_container, suffix) == stripe_container._current_state  # type: ignore[attr-defined]
    assert len(payments_of(stripe_container, f"cus_{suffix}")) == 1
