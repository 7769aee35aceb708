"""An alert's state always follows its condition, whatever the timing: the policies decide
whether an alert is open from the alert itself, not from a read model that lags within a batch.
And the quota list has a row for each quota of a live subscription, usage or not."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from application import commands as c
from application.simulation import Simulation
from infra.bootstrap import Container
from projections.policies import Policies
from tests.integration.test_policies import alerts, ctx, customer_with_plan, open_invoice, policies, settle

__all__ = ["policies"]  # the fixture, shared with test_policies

START = datetime(2025, 3, 10, 9, tzinfo=UTC)


@pytest.mark.parametrize("attempt", range(3))
def test_a_payment_failing_then_retried_and_succeeding_at_once_leaves_no_open_payment_failed_alert(
    container: Container, policies: Policies, attempt: int
) -> None:
    customer, _ = customer_with_plan(container, c.DefinePlan("pro", "Pro", "EUR", 5000, "month"))
    invoice = open_invoice(container, customer, date(2025, 3, 24))
    ledger = container.ledger
    payment = ledger.initiate_payment(c.InitiatePayment(customer, 5000, "EUR", invoice), ctx(START))
    # All three before the policies see any of them: they handle them in one batch.
    ledger.fail_payment(c.FailPayment(payment.resource_id, "card_declined"), ctx(START + timedelta(hours=1)))
    ledger.retry_payment(c.RetryPayment(payment.resource_id), ctx(START + timedelta(hours=2)))
    ledger.succeed_payment(c.SucceedPayment(payment.resource_id), ctx(START + timedelta(hours=2)))
    settle(container, policies)
    found = {(a["type"], a["status"]) for a in alerts(container)}
    assert ("payment_failed", "resolved") in found
    # The customer may never have been seen at risk; it must not be left so.
    assert {status for _, status in found} == {"resolved"}


def test_a_failed_payments_invoice_paid_by_another_payment_resolves_the_alerts(
    container: Container, policies: Policies
) -> None:
    customer, _ = customer_with_plan(container, c.DefinePlan("pro", "Pro", "EUR", 5000, "month"))
    invoice = open_invoice(container, customer, date(2025, 3, 24))
    ledger = container.ledger
    card = ledger.initiate_payment(c.InitiatePayment(customer, 5000, "EUR", invoice), ctx(START))
    ledger.fail_payment(c.FailPayment(card.resource_id, "card_declined"), ctx(START + timedelta(hours=1)))
    settle(container, policies)
    assert {a["status"] for a in alerts(container)} == {"open"}

    transfer = ledger.initiate_payment(c.InitiatePayment(customer, 5000, "EUR", invoice), ctx(START))
    ledger.succeed_payment(c.SucceedPayment(transfer.resource_id), ctx(START + timedelta(days=2)))
    settle(container, policies)
    assert {(a["type"], a["status"]) for a in alerts(container)} == {
        ("payment_failed", "resolved"),
        ("customer_at_risk", "resolved"),
    }


def test_a_condition_that_comes_back_reopens_its_alert_and_the_list_reads_it_open(
    container: Container, policies: Policies, client: TestClient, reader: dict[str, str]
) -> None:
    customer, _ = customer_with_plan(container, c.DefinePlan("pro", "Pro", "EUR", 5000, "month"))
    invoice = open_invoice(container, customer, date(2025, 3, 24))
    ledger = container.ledger
    payment = ledger.initiate_payment(c.InitiatePayment(customer, 5000, "EUR", invoice), ctx(START))
    ledger.fail_payment(c.FailPayment(payment.resource_id, "card_declined"), ctx(START + timedelta(hours=1)))
    settle(container, policies)
    (failed,) = [a for a in alerts(container) if a["type"] == "payment_failed"]
    ledger.resolve_alert(c.ResolveAlert(failed["id"], "called the customer"), ctx(START + timedelta(hours=2)))
    retry = ledger.retry_payment(c.RetryPayment(payment.resource_id), ctx(START + timedelta(days=1)))
    ledger.fail_payment(
        c.FailPayment(retry.resource_id, "insufficient_funds"), ctx(START + timedelta(days=1))
    )
    settle(container, policies)

    listed = client.get("/v1/alerts", params={"type": "payment_failed"}, headers=reader).json()["data"]
    assert [(a["id"], a["status"], a["resolved_at"]) for a in listed] == [(str(failed["id"]), "open", None)]
    assert "insufficient_funds" in listed[0]["message"]


def test_after_a_simulated_history_every_open_alert_stands_for_a_condition_that_holds(
    container: Container, policies: Policies, client: TestClient, reader: dict[str, str]
) -> None:
    until = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    Simulation(container.ledger, customers=40, months=6, seed=3, until=until).run()
    settle(container, policies)

    def listed(**params: Any) -> list[dict[str, Any]]:
        response = client.get("/v1/alerts", params={"status": "open", "limit": 500, **params}, headers=reader)
        return list(response.json()["data"])

    def invoice(invoice_id: str) -> dict[str, Any]:
        return dict(client.get(f"/v1/invoices/{invoice_id}", headers=reader).json())

    failed = listed(type="payment_failed")
    assert failed, "the history has failing payments"
    for alert in failed:
        read = invoice(alert["subject"].removeprefix("invoice:"))
        assert (read["status"], read["amount_remaining"] > 0) == ("open", True), (alert, read)

    at_risk_alerts = {a["customer_id"] for a in listed(type="customer_at_risk")}
    customers = client.get("/v1/customers", params={"limit": 500}, headers=reader).json()["data"]
    at_risk = {c["id"] for c in customers if c["status"] == "at_risk"}
    assert at_risk_alerts == at_risk


def test_a_quota_without_usage_reads_used_zero_in_its_current_period(
    client: TestClient, admin: dict[str, str], reader: dict[str, str]
) -> None:
    plan = {
        "code": "metered",
        "name": "Metered",
        "currency": "EUR",
        "amount": 1000,
        "interval": "month",
        "quotas": {"calls": {"limit": 100, "aggregation": "sum", "enforcement": "hard"}},
    }
    assert client.post("/v1/plans", json=plan, headers=admin).status_code in (200, 201)
    customer = client.post(
        "/v1/customers", json={"external_id": "q", "email": "q@x.io", "currency": "EUR"}, headers=admin
    ).json()["id"]
    sub = client.post(
        "/v1/subscriptions", json={"customer_id": customer, "plan_code": "metered"}, headers=admin
    ).json()
    rows = client.get(
        "/v1/usage/quotas", params={"customer_id": customer, "min_position": sub["position"]}, headers=reader
    ).json()["data"]
    assert [(r["metric"], r["used"], r["limit"], r["state"]) for r in rows] == [("calls", 0, 100, "ok")]
    assert (rows[0]["period_start"], rows[0]["period_end"]) == (
        sub["current_period_start"],
        sub["current_period_end"],
    )
    entitlement = client.get(f"/v1/customers/{customer}/entitlements/calls", headers=reader).json()
    assert (entitlement["allowed"], entitlement["used"], entitlement["remaining"]) == (True, 0, 100)
