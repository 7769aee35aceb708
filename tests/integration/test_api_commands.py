"""Commands through the HTTP API: what a finance or ops user does, and what they read back."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from infra.bootstrap import Container
from tests.conftest import count_events

PLAN = {"code": "pro", "name": "Pro", "currency": "EUR", "amount": 2000, "interval": "month"}


def _customer(client: TestClient, admin: dict[str, str], external_id: str = "acme", **extra: Any) -> Any:
    body = {"external_id": external_id, "email": f"{external_id}@example.com", "currency": "EUR", **extra}
    response = client.post("/v1/customers", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


def _subscribed(client: TestClient, admin: dict[str, str]) -> tuple[Any, Any]:
    assert client.post("/v1/plans", json=PLAN, headers=admin).status_code == 201
    customer = _customer(client, admin)
    response = client.post(
        "/v1/subscriptions", json={"customer_id": customer["id"], "plan_code": "pro"}, headers=admin
    )
    assert response.status_code == 201, response.text
    return customer, response.json()


def test_plan_customer_and_subscription_are_readable_after_their_writes(
    client: TestClient, admin: dict[str, str]
) -> None:
    customer, sub = _subscribed(client, admin)
    assert sub["status"] == "active"
    assert sub["position"] > customer["position"]

    read = client.get(
        f"/v1/subscriptions/{sub['id']}", params={"min_position": sub["position"]}, headers=admin
    )
    assert read.status_code == 200
    assert read.json()["mrr"] == 2000
    got = client.get(
        f"/v1/customers/{customer['id']}", params={"min_position": sub["position"]}, headers=admin
    )
    assert got.json()["mrr"] == 2000
    assert got.json()["status"] == "active"
    plan = client.get("/v1/plans/pro", params={"min_position": sub["position"]}, headers=admin)
    assert plan.json()["amount"] == 2000


def test_yearly_plan_contributes_a_twelfth_rounded_half_even(
    client: TestClient, admin: dict[str, str]
) -> None:
    yearly = {**PLAN, "code": "pro-year", "amount": 200000, "interval": "year"}
    client.post("/v1/plans", json=yearly, headers=admin)
    customer = _customer(client, admin)
    sub = client.post(
        "/v1/subscriptions", json={"customer_id": customer["id"], "plan_code": "pro-year"}, headers=admin
    ).json()
    read = client.get(
        f"/v1/subscriptions/{sub['id']}", params={"min_position": sub["position"]}, headers=admin
    )
    assert read.json()["mrr"] == 16667


def test_same_idempotency_key_records_once_and_answers_the_same(
    client: TestClient, admin: dict[str, str], container: Container
) -> None:
    client.post("/v1/plans", json=PLAN, headers=admin)
    customer = _customer(client, admin)
    headers = {**admin, "Idempotency-Key": "pay-2025-03-acme"}
    body = {"customer_id": customer["id"], "amount": 2000, "currency": "EUR"}
    before = count_events(container)
    first = client.post("/v1/payments", json=body, headers=headers)
    second = client.post("/v1/payments", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert count_events(container) == before + 2  # the payment and its command record
    payments = client.get("/v1/payments", params={"min_position": first.json()["position"]}, headers=admin)
    assert len(payments.json()["data"]) == 1


def test_idempotency_key_reused_with_another_body_is_refused(
    client: TestClient, admin: dict[str, str], container: Container
) -> None:
    customer = _customer(client, admin)
    headers = {**admin, "Idempotency-Key": "k-1"}
    client.post(
        "/v1/payments",
        json={"customer_id": customer["id"], "amount": 100, "currency": "EUR"},
        headers=headers,
    )
    before = count_events(container)
    again = client.post(
        "/v1/payments",
        json={"customer_id": customer["id"], "amount": 999, "currency": "EUR"},
        headers=headers,
    )
    assert again.status_code == 422
    assert again.json()["type"].endswith("idempotency_key_reused")
    assert count_events(container) == before


def test_same_natural_key_registers_once_and_answers_the_same(
    client: TestClient, admin: dict[str, str], container: Container
) -> None:
    first = _customer(client, admin)
    before = count_events(container)
    second = _customer(client, admin)
    assert first == second
    assert count_events(container) == before


def test_same_plan_definition_twice_records_once(
    client: TestClient, admin: dict[str, str], container: Container
) -> None:
    first = client.post("/v1/plans", json=PLAN, headers=admin)
    before = count_events(container)
    second = client.post("/v1/plans", json=PLAN, headers=admin)
    assert second.status_code == first.status_code == 201  # answers as the first time
    assert first.json() == second.json()
    assert count_events(container) == before


def test_revising_a_plan_records_its_new_terms(client: TestClient, admin: dict[str, str]) -> None:
    client.post("/v1/plans", json=PLAN, headers=admin)
    terms = {key: value for key, value in PLAN.items() if key != "code"}
    revised = client.post("/v1/plans/pro/revise", json={**terms, "amount": 2500}, headers=admin)
    assert revised.status_code == 200
    assert revised.json()["amount"] == 2500
    assert revised.json()["version"] == 2


def _listed_under(client: TestClient, admin: dict[str, str], customer_id: str) -> set[str]:
    """The statuses whose filtered customer list holds the customer."""
    found = set()
    for status in ("active", "at_risk", "churned"):
        listed = client.get("/v1/customers", params={"status": status, "limit": 100}, headers=admin)
        assert listed.status_code == 200, listed.text
        if customer_id in {c["id"] for c in listed.json()["data"]}:
            found.add(status)
    return found


def test_failed_payment_makes_subscription_past_due_and_payment_recovers_it(
    client: TestClient, admin: dict[str, str]
) -> None:
    customer, sub = _subscribed(client, admin)
    invoice = client.post(
        "/v1/invoices",
        json={
            "customer_id": customer["id"],
            "currency": "EUR",
            "subscription_id": sub["id"],
            "lines": [{"description": "Pro, March", "quantity": 1, "unit_amount": 2000}],
        },
        headers=admin,
    ).json()
    finalized = client.post(
        f"/v1/invoices/{invoice['id']}/finalize", json={"due_date": "2099-01-15"}, headers=admin
    )
    assert finalized.status_code == 200, finalized.text
    assert finalized.json()["status"] == "open"
    assert finalized.json()["number"].startswith("INV-")

    payment = client.post(
        "/v1/payments",
        json={"customer_id": customer["id"], "invoice_id": invoice["id"], "amount": 2000, "currency": "EUR"},
        headers=admin,
    ).json()
    failed = client.post(
        f"/v1/payments/{payment['id']}/fail", json={"failure_code": "card_declined"}, headers=admin
    )
    assert failed.json()["status"] == "failed"
    read = client.get(
        f"/v1/subscriptions/{sub['id']}", params={"min_position": failed.json()["position"]}, headers=admin
    )
    assert read.json()["status"] == "past_due"
    assert read.json()["mrr"] == 2000  # past_due still counts
    at_risk = client.get(f"/v1/customers/{customer['id']}", headers=admin)
    assert at_risk.json()["status"] == "at_risk"
    assert _listed_under(client, admin, customer["id"]) == {"at_risk"}

    client.post(f"/v1/payments/{payment['id']}/retry", json={}, headers=admin)
    paid = client.post(f"/v1/payments/{payment['id']}/succeed", json={}, headers=admin)
    assert paid.json()["status"] == "succeeded"
    position = paid.json()["position"]
    assert (
        client.get(f"/v1/subscriptions/{sub['id']}", params={"min_position": position}, headers=admin).json()[
            "status"
        ]
        == "active"
    )
    inv = client.get(f"/v1/invoices/{invoice['id']}", params={"min_position": position}, headers=admin).json()
    assert (inv["status"], inv["amount_paid"], inv["amount_remaining"]) == ("paid", 2000, 0)
    healthy = client.get(f"/v1/customers/{customer['id']}", headers=admin).json()
    assert healthy["status"] == "active"
    assert _listed_under(client, admin, customer["id"]) == {"active"}
    assert healthy["lifetime_value"] == 2000


def test_partial_payment_reduces_amount_remaining(client: TestClient, admin: dict[str, str]) -> None:
    customer = _customer(client, admin, tax_rate_bps=2000)
    invoice = client.post(
        "/v1/invoices",
        json={
            "customer_id": customer["id"],
            "currency": "EUR",
            "lines": [{"description": "Setup", "quantity": 3, "unit_amount": 1000}],
        },
        headers=admin,
    ).json()
    finalized = client.post(
        f"/v1/invoices/{invoice['id']}/finalize", json={"due_date": "2099-01-01"}, headers=admin
    ).json()
    assert (finalized["subtotal"], finalized["tax"], finalized["total"]) == (3000, 600, 3600)
    payment = client.post(
        "/v1/payments",
        json={"customer_id": customer["id"], "invoice_id": invoice["id"], "amount": 1000, "currency": "EUR"},
        headers=admin,
    ).json()
    done = client.post(f"/v1/payments/{payment['id']}/succeed", json={}, headers=admin).json()
    inv = client.get(
        f"/v1/invoices/{invoice['id']}", params={"min_position": done["position"]}, headers=admin
    ).json()
    assert (inv["status"], inv["amount_paid"], inv["amount_remaining"]) == ("open", 1000, 2600)


def test_cancel_at_period_end_keeps_the_subscription_until_the_period_ends(
    client: TestClient, admin: dict[str, str]
) -> None:
    _, sub = _subscribed(client, admin)
    scheduled = client.post(
        f"/v1/subscriptions/{sub['id']}/cancel", json={"at_period_end": True}, headers=admin
    ).json()
    assert scheduled["status"] == "active"
    assert scheduled["cancel_at_period_end"] is True
    renew = client.post(f"/v1/subscriptions/{sub['id']}/renew", json={}, headers=admin)
    assert renew.status_code == 409
    now = client.post(
        f"/v1/subscriptions/{sub['id']}/cancel", json={"at_period_end": False}, headers=admin
    ).json()
    assert now["status"] == "canceled"
    again = client.post(f"/v1/subscriptions/{sub['id']}/cancel", json={"at_period_end": False}, headers=admin)
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"


def test_backdated_command_records_its_business_time(
    client: TestClient, admin: dict[str, str], container: Container
) -> None:
    body = {
        "external_id": "old",
        "email": "old@example.com",
        "currency": "USD",
        "effective_at": "2024-01-31T10:00:00Z",
    }
    created = client.post(
        "/v1/customers", json=body, headers={**admin, "X-Reason": "import from legacy"}
    ).json()
    assert created["created_at"] == "2024-01-31T10:00:00Z"
    with container.pool.connection() as conn:
        row: Any = conn.execute(
            "SELECT occurred_at, reason FROM events WHERE position = %s", (created["position"],)
        ).fetchone()
    assert row["occurred_at"].isoformat() == "2024-01-31T10:00:00+00:00"
    assert row["reason"] == "import from legacy"


def test_lists_are_paginated_with_a_cursor(client: TestClient, admin: dict[str, str]) -> None:
    last = None
    for i in range(5):
        last = _customer(client, admin, external_id=f"c{i}")
    assert last is not None
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "min_position": last["position"]}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/customers", params=params, headers=admin).json()
        seen += [c["external_id"] for c in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"c{i}" for i in range(5)]


def test_alert_is_listed_and_resolved_with_a_note(
    client: TestClient, admin: dict[str, str], container: Container
) -> None:
    from datetime import UTC, datetime
    from uuid import uuid4

    from application import commands as c

    raised = container.ledger.raise_alert(
        c.RaiseAlert(uuid4(), "payment_failed", "critical", "payment:123", "card declined"),
        c.CommandContext(occurred_at=datetime.now(UTC), source="policy"),
    )
    listed = client.get(
        "/v1/alerts",
        params={"severity": "critical", "status": "open", "min_position": raised.position},
        headers=admin,
    ).json()
    assert [a["id"] for a in listed["data"]] == [str(raised.resource_id)]
    resolved = client.post(
        f"/v1/alerts/{raised.resource_id}/resolve", json={"note": "customer paid by wire"}, headers=admin
    )
    assert resolved.status_code == 200
    assert resolved.json()["status"] == "resolved"
    after = client.get(
        "/v1/alerts", params={"status": "open", "min_position": resolved.json()["position"]}, headers=admin
    ).json()
    assert after["data"] == []
    twice = client.post(f"/v1/alerts/{raised.resource_id}/resolve", json={"note": "again"}, headers=admin)
    assert twice.status_code == 409
