"""POST /v1/webhooks/stripe: signed Stripe events, verified, kept verbatim, translated into the
ledger's events once, converging whatever the order in which Stripe delivers them."""

from __future__ import annotations

import copy
import time
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import ids
from infra.bootstrap import Container
from tests.conftest import count_events
from tests.integration.stripe_helpers import (
    body_of,
    customer,
    deliver,
    envelope,
    ledger_state,
    lifecycle,
    sign,
)

# ---------------------------------------------------------------------------- the lifecycle


def test_a_stripe_lifecycle_becomes_the_ledgers_customer_subscription_invoice_and_payment(
    stripe: TestClient, stripe_container: Container
) -> None:
    for event in lifecycle("natural"):
        response = deliver(stripe, event)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "accepted"
    state = ledger_state(stripe_container, "natural")
    assert state["customer"] | {"id": None} == {
        "id": None,
        "external_id": "cus_X",
        "email": "jenny.rosen@example.com",
        "name": "Jenny Rosen",
        "currency": "EUR",
        "tax_rate_bps": 0,
        "tax_exempt": "none",
        "vat_id": None,
        "address": None,
        "net_terms_days": 30,
        "collection_method": "send_invoice",
        "discount": None,
        "metadata": {"account": "acme"},
        "archived": False,
    }
    assert state["plan"]["code"] == "price_1MowQULkdIwHu7ixraBm864M"
    assert (state["plan"]["amount"], state["plan"]["currency"], state["plan"]["interval"]) == (
        2000,
        "EUR",
        "month",
    )
    sub = state["subscription"]
    assert (sub["status"], sub["quantity"], sub["amount"]) == ("canceled", 2, 2000)
    assert sub["trial_end"] == "2025-03-05T21:21:00+00:00"
    assert sub["ended_at"] == "2025-03-15T21:21:00+00:00"
    inv = state["invoice"]
    assert (inv["status"], inv["number"], inv["subtotal"], inv["tax"], inv["total"]) == (
        "paid",
        "8D7A1B2C-0001",
        4000,
        800,
        4800,
    )
    assert (inv["amount_paid"], inv["amount_remaining"]) == (4800, 0)
    pay = state["payment"]
    assert (pay["status"], pay["amount"], pay["attempt"], pay["currency"]) == ("succeeded", 4800, 2, "EUR")


def test_each_stripe_event_is_kept_verbatim_with_the_stripe_envelope(
    stripe: TestClient, stripe_container: Container
) -> None:
    event = lifecycle("verbatim")[1]
    response = deliver(stripe, event)
    with stripe_container.pool.connection() as conn:
        rows: list[Any] = conn.execute(
            "SELECT type, source, actor, customer_id, payload FROM events WHERE stream_id = %s",
            (ids.stripe_event_id(event["id"]),),
        ).fetchall()
        sources: Any = conn.execute(
            "SELECT DISTINCT source, actor FROM events WHERE correlation_id = %s",
            (ids.stripe_event_id(event["id"]),),
        ).fetchall()
    (row,) = rows
    assert row["type"] == "StripeEventRecord.Received"
    assert row["payload"]["payload"] == event
    assert row["payload"]["translated"] is True
    assert row["customer_id"] == ids.customer_id("cus_verbatim")
    assert [(r["source"], r["actor"]) for r in sources] == [("stripe", "stripe")]
    assert response.json()["position"] > 0


def test_a_redelivered_event_is_recorded_once(stripe: TestClient, stripe_container: Container) -> None:
    event = lifecycle("twice")[1]
    first = deliver(stripe, event)
    before = count_events(stripe_container)
    again = deliver(stripe, event)
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert again.json()["position"] == first.json()["position"]
    assert count_events(stripe_container) == before


def test_an_unknown_event_type_is_kept_verbatim_and_answered_200(
    stripe: TestClient, stripe_container: Container
) -> None:
    event = envelope(
        "evt_unknown_1", "billing_portal.session.created", 1_740_000_000, {"id": "bps_1", "object": "x"}
    )
    before = count_events(stripe_container)
    response = deliver(stripe, event)
    assert response.status_code == 200
    assert count_events(stripe_container) == before + 1


def test_out_of_order_snapshots_converge_paid_before_finalized_and_updated_before_created(
    stripe: TestClient, stripe_container: Container
) -> None:
    events = lifecycle("reversed")
    for event in reversed(events):
        assert deliver(stripe, event).status_code == 200
    for event in lifecycle("natural2"):
        deliver(stripe, event)
    assert ledger_state(stripe_container, "reversed") == ledger_state(stripe_container, "natural2")


def test_customer_deleted_archives_the_customer(stripe: TestClient, stripe_container: Container) -> None:
    created = envelope("evt_del_1", "customer.created", 1_740_000_000, customer("cus_del", currency="usd"))
    gone = {**customer("cus_del", currency="usd"), "deleted": True}
    deliver(stripe, created)
    deliver(stripe, envelope("evt_del_2", "customer.deleted", 1_740_000_100, gone))
    mirror = stripe_container.ledger.repository.get(ids.customer_id("cus_del"))
    assert (mirror.currency, mirror.is_archived) == ("USD", True)


def test_refund_of_a_charge_refunds_its_payment(stripe: TestClient, stripe_container: Container) -> None:
    intent = {
        "id": "pi_refund",
        "object": "payment_intent",
        "amount": 5000,
        "amount_received": 5000,
        "currency": "usd",
        "customer": "cus_refund",
        "created": 1_740_000_000,
        "invoice": None,
        "last_payment_error": None,
        "status": "succeeded",
    }
    charge = {
        "id": "ch_refund",
        "object": "charge",
        "amount": 5000,
        "amount_captured": 5000,
        "amount_refunded": 1500,
        "created": 1_740_000_001,
        "currency": "usd",
        "customer": "cus_refund",
        "invoice": None,
        "paid": True,
        "payment_intent": "pi_refund",
        "refunded": False,
        "status": "succeeded",
    }
    deliver(stripe, envelope("evt_pi_ok", "payment_intent.succeeded", 1_740_000_002, intent))
    deliver(stripe, envelope("evt_ch_ref", "charge.refunded", 1_740_000_500, charge))
    payment = stripe_container.ledger.repository.get(ids.stripe_object_id("pi_refund"))
    assert (payment.status, payment.amount, payment.amount_refunded) == ("succeeded", 5000, 1500)
    full = {**charge, "amount_refunded": 5000, "refunded": True}
    deliver(stripe, envelope("evt_ch_ref_2", "charge.refunded", 1_740_000_900, full))
    payment = stripe_container.ledger.repository.get(ids.stripe_object_id("pi_refund"))
    assert (payment.status, payment.amount_refunded) == ("refunded", 5000)


def test_failed_payment_intent_records_the_decline(stripe: TestClient, stripe_container: Container) -> None:
    intent = {
        "id": "pi_declined",
        "object": "payment_intent",
        "amount": 1200,
        "currency": "eur",
        "customer": "cus_declined",
        "created": 1_740_000_000,
        "invoice": None,
        "last_payment_error": {
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.",
        },
        "status": "requires_payment_method",
    }
    deliver(stripe, envelope("evt_pi_fail", "payment_intent.payment_failed", 1_740_000_001, intent))
    payment = stripe_container.ledger.repository.get(ids.stripe_object_id("pi_declined"))
    assert (payment.status, payment.failure_code) == ("failed", "insufficient_funds")
    assert payment.failure_message == "Your card has insufficient funds."


# ---------------------------------------------------------------------------- refusals


def test_bad_signatures_stale_timestamps_and_malformed_bodies_are_400_and_store_nothing(
    stripe: TestClient, stripe_container: Container
) -> None:
    event = lifecycle("refused")[0]
    body = body_of(event)
    before = count_events(stripe_container)
    cases = [
        {"Stripe-Signature": sign(body, secret="whsec_someone_else")},
        {"Stripe-Signature": sign(body, timestamp=int(time.time()) - 301)},
        {"Stripe-Signature": "t=abc,v1=zz"},
        {},
    ]
    for headers in cases:
        response = stripe.post(
            "/v1/webhooks/stripe", content=body, headers={"Content-Type": "application/json", **headers}
        )
        assert response.status_code == 400, response.text
        assert response.json()["type"].endswith("/invalid_signature")
    tampered = body.replace(b"jenny.rosen", b"eve")
    response = stripe.post(
        "/v1/webhooks/stripe",
        content=tampered,
        headers={"Content-Type": "application/json", "Stripe-Signature": sign(body)},
    )
    assert response.status_code == 400
    for content in (b"{not json", b'{"object": "list"}', b"\xff\xfe"):
        response = stripe.post(
            "/v1/webhooks/stripe",
            content=content,
            headers={"Content-Type": "application/json", "Stripe-Signature": sign(content)},
        )
        assert response.status_code == 400, response.text
    wrong_type = stripe.post(
        "/v1/webhooks/stripe",
        content=body,
        headers={"Content-Type": "text/plain", "Stripe-Signature": sign(body)},
    )
    assert wrong_type.status_code == 415
    assert count_events(stripe_container) == before


def test_within_the_tolerance_a_delayed_delivery_is_accepted(stripe: TestClient) -> None:
    response = deliver(stripe, lifecycle("late")[0], timestamp=int(time.time()) - 290)
    assert response.status_code == 200


def test_without_a_configured_secret_webhooks_are_refused(client: TestClient) -> None:
    body = body_of(lifecycle("nosecret")[0])
    response = client.post(
        "/v1/webhooks/stripe",
        content=body,
        headers={"Content-Type": "application/json", "Stripe-Signature": sign(body)},
    )
    assert response.status_code == 503


# ---------------------------------------------------------------------------- any order


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(range(7)), redelivered=st.lists(st.integers(0, 6), max_size=3))
def test_any_order_of_delivery_gives_the_same_final_state(
    stripe: TestClient, stripe_container: Container, order: list[int], redelivered: list[int]
) -> None:
    if not hasattr(stripe_container, "_natural_state"):
        for event in lifecycle("baseline"):
            deliver(stripe, event)
        stripe_container._natural_state = ledger_state(stripe_container, "baseline")  # type: ignore[attr-defined]
    suffix = f"p{abs(hash((tuple(order), tuple(redelivered)))) % 10**12}"
    if stripe_container.ledger.store.position_of(ids.stripe_event_id(f"evt_{suffix}_1")) is not None:
        return  # hypothesis tried this very case already
    events = lifecycle(suffix)
    for index in [*order, *redelivered]:
        assert deliver(stripe, copy.deepcopy(events[index])).status_code == 200
    assert ledger_state(stripe_container, suffix) == stripe_container._natural_state  # type: ignore[attr-defined]


def test_an_older_snapshot_arriving_late_changes_nothing(
    stripe: TestClient, stripe_container: Container
) -> None:
    created, updated = lifecycle("stale")[1:3]
    newer = copy.deepcopy(updated)
    newer["id"], newer["created"] = "evt_stale_newer", updated["created"] + 600
    newer["data"]["object"]["items"]["data"][0]["quantity"] = 5
    deliver(stripe, created)
    deliver(stripe, newer)
    before = count_events(stripe_container)
    late = deliver(stripe, updated)  # quantity 2, older than the quantity 5 already applied
    assert late.json()["status"] == "accepted"
    assert count_events(stripe_container) == before + 1  # kept verbatim, nothing else
    sub = stripe_container.ledger.repository.get(ids.stripe_object_id("sub_stale"))
    assert (sub.status, sub.quantity) == ("active", 5)
