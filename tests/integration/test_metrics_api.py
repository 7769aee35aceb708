"""MRR, movements, churn, receivables and quotas through the HTTP API, on backdated histories:
what finance reads, checked against SPEC section 4."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from infra.bootstrap import Container
from tests.conftest import bearer

MONTHLY = {"code": "pro", "name": "Pro", "currency": "EUR", "amount": 2000, "interval": "month"}
YEARLY = {"code": "pro-year", "name": "Pro yearly", "currency": "EUR", "amount": 200000, "interval": "year"}
SMALL = {"code": "starter", "name": "Starter", "currency": "EUR", "amount": 1000, "interval": "month"}


class Finance:
    """A small driver over the API that remembers the last position written."""

    def __init__(self, client: TestClient, admin: dict[str, str]) -> None:
        self.client = client
        self.admin = admin
        self.position = 0

    def post(self, path: str, body: dict[str, Any], status: int = 201) -> Any:
        response = self.client.post(path, json=body, headers=self.admin)
        assert response.status_code in (status, 200), response.text
        answer = response.json()
        self.position = max(self.position, answer.get("position", 0))
        return answer

    def get(self, path: str, **params: Any) -> Any:
        response = self.client.get(path, params={"min_position": self.position, **params}, headers=self.admin)
        assert response.status_code == 200, response.text
        return response.json()

    def plans(self, *plans: dict[str, Any]) -> None:
        for plan in plans:
            self.post("/v1/plans", plan)

    def customer(self, name: str) -> str:
        body = {"external_id": name, "email": f"{name}@example.com", "currency": "EUR"}
        return str(self.post("/v1/customers", {**body, "effective_at": "2025-01-01T00:00:00Z"})["id"])

    def subscribe(
        self,
        customer: str,
        plan: str,
        at: str,
        quantity: int = 1,
        trial_days: int = 0,
        billed_by: str = "ledger",
    ) -> str:
        body = {
            "customer_id": customer,
            "plan_code": plan,
            "quantity": quantity,
            "trial_days": trial_days,
            "effective_at": at,
            "billed_by": billed_by,
        }
        return str(self.post("/v1/subscriptions", body)["id"])

    def series(self, first: str, last: str) -> dict[date, dict[str, Any]]:
        rows = self.get("/v1/metrics/mrr", **{"from": first, "to": last, "currency": "EUR"})["data"]
        return {date.fromisoformat(r["date"]): r for r in rows}


@pytest.fixture
def finance(client: TestClient, admin: dict[str, str]) -> Finance:
    return Finance(client, admin)


def _identity_holds(rows: dict[date, dict[str, Any]]) -> None:
    days = sorted(rows)
    for previous, day in pairwise(days):
        r = rows[day]
        expected = (
            rows[previous]["mrr"]
            + r["new"]
            + r["expansion"]
            + r["reactivation"]
            - r["contraction"]
            - r["churn"]
        )
        assert r["mrr"] == expected, day


def test_monthly_and_yearly_plans_count_together_with_quantity(finance: Finance) -> None:
    finance.plans(MONTHLY, YEARLY)
    a, b = finance.customer("a"), finance.customer("b")
    finance.subscribe(a, "pro", "2025-01-10T09:00:00Z", quantity=2)
    finance.subscribe(b, "pro-year", "2025-01-15T23:59:00Z")

    rows = finance.series("2025-01-09", "2025-01-16")

    assert rows[date(2025, 1, 9)]["mrr"] == 0
    assert rows[date(2025, 1, 10)] | {} == {**rows[date(2025, 1, 10)], "mrr": 4000, "new": 4000}
    # 2,000.00 a year is 166.67 a month: rounded half-even once.
    assert rows[date(2025, 1, 15)]["new"] == 16667
    assert rows[date(2025, 1, 16)]["mrr"] == 4000 + 16667
    _identity_holds(rows)


def test_each_movement_is_reported_and_drills_down_to_its_customers(finance: Finance) -> None:
    finance.plans(MONTHLY, SMALL)
    a = finance.customer("a")
    sub = finance.subscribe(a, "starter", "2025-02-01T10:00:00Z")
    finance.post(
        f"/v1/subscriptions/{sub}/change", {"plan_code": "pro", "effective_at": "2025-02-03T10:00:00Z"}, 200
    )
    finance.post(
        f"/v1/subscriptions/{sub}/change",
        {"quantity": 1, "plan_code": "starter", "effective_at": "2025-02-05T10:00:00Z"},
        200,
    )
    finance.post(
        f"/v1/subscriptions/{sub}/cancel",
        {"at_period_end": False, "effective_at": "2025-02-07T10:00:00Z"},
        200,
    )
    finance.subscribe(a, "pro", "2025-02-09T10:00:00Z")

    rows = finance.series("2025-01-31", "2025-02-10")

    assert rows[date(2025, 2, 1)]["new"] == 1000
    assert rows[date(2025, 2, 3)]["expansion"] == 1000
    assert rows[date(2025, 2, 5)]["contraction"] == 1000
    assert rows[date(2025, 2, 7)]["churn"] == 1000
    assert rows[date(2025, 2, 9)]["reactivation"] == 2000
    assert rows[date(2025, 2, 10)]["mrr"] == 2000
    _identity_holds(rows)
    drill = finance.get("/v1/metrics/mrr/movements", date="2025-02-07", currency="EUR")
    assert drill["totals"]["churn"] == 1000
    assert [(m["customer_id"], m["kind"], m["amount"], m["mrr_after"]) for m in drill["data"]] == [
        (a, "churn", 1000, 0)
    ]


def test_a_trial_counts_from_trial_end_even_before_the_conversion_is_recorded(finance: Finance) -> None:
    finance.plans(MONTHLY)
    a = finance.customer("a")
    finance.subscribe(a, "pro", "2025-03-01T12:00:00Z", trial_days=14)

    rows = finance.series("2025-03-01", "2025-03-16")

    assert all(rows[date(2025, 3, d)]["mrr"] == 0 for d in range(1, 15))
    assert rows[date(2025, 3, 15)]["new"] == 2000


def test_cancel_at_period_end_counts_until_the_end_and_past_due_still_counts(finance: Finance) -> None:
    finance.plans(MONTHLY)
    a = finance.customer("a")
    sub = finance.subscribe(a, "pro", "2025-04-10T08:00:00Z")
    finance.post(
        f"/v1/subscriptions/{sub}/cancel",
        {"at_period_end": True, "effective_at": "2025-04-20T08:00:00Z"},
        200,
    )

    rows = finance.series("2025-04-19", "2025-05-11")

    assert rows[date(2025, 5, 9)]["mrr"] == 2000
    assert rows[date(2025, 5, 10)]["churn"] == 2000
    assert rows[date(2025, 5, 10)]["mrr"] == 0


def test_churn_is_zero_without_cancellations_and_counts_a_churned_customer(finance: Finance) -> None:
    finance.plans(MONTHLY)
    subs = [finance.subscribe(finance.customer(f"c{i}"), "pro", "2025-01-05T10:00:00Z") for i in range(4)]

    quiet = finance.get("/v1/metrics/churn", **{"from": "2025-02-01", "to": "2025-03-01", "currency": "EUR"})
    assert quiet["customers_at_start"] == 4
    assert quiet["churned_customers"] == 0
    assert quiet["customer_churn_rate"] == 0
    assert quiet["gross_mrr_churn_rate"] == 0

    finance.post(
        f"/v1/subscriptions/{subs[0]}/cancel",
        {"at_period_end": False, "effective_at": "2025-02-10T10:00:00Z"},
        200,
    )
    window = finance.get("/v1/metrics/churn", **{"from": "2025-02-01", "to": "2025-03-01", "currency": "EUR"})
    assert window["churned_customers"] == 1
    assert window["customer_churn_rate"] == 0.25
    assert window["mrr_at_start"] == 8000
    assert window["churned_mrr"] == 2000
    assert window["gross_mrr_churn_rate"] == 0.25
    assert window["net_mrr_churn_rate"] == 0.25


def test_the_summary_reads_the_customer_churn_of_the_last_30_days(finance: Finance) -> None:
    finance.plans(MONTHLY)
    today = datetime.now(UTC).date()
    started = f"{today - timedelta(days=70)}T10:00:00Z"
    subs = [finance.subscribe(finance.customer(f"s{i}"), "pro", started) for i in range(5)]
    # One churned before the window, two inside it; a newcomer in the window is not at its start.
    for sub, days_ago in ((subs[0], 40), (subs[1], 10), (subs[2], 12)):
        at = f"{today - timedelta(days=days_ago)}T10:00:00Z"
        finance.post(f"/v1/subscriptions/{sub}/cancel", {"at_period_end": False, "effective_at": at}, 200)
    finance.subscribe(finance.customer("newcomer"), "pro", f"{today - timedelta(days=5)}T10:00:00Z")

    summary = finance.get("/v1/metrics/summary", currency="EUR")
    window = finance.get(
        "/v1/metrics/churn",
        **{"from": str(today - timedelta(days=29)), "to": str(today + timedelta(days=1)), "currency": "EUR"},
    )
    # Four paying 30 days ago; two of them pay nothing today.
    assert (window["customers_at_start"], window["churned_customers"]) == (4, 2)
    assert summary["customer_churn_rate_30d"] == window["customer_churn_rate"] == 0.5
    assert summary["mrr"] == 3 * 2000
    assert summary["active_subscriptions"] == 3


def _open_invoice(finance: Finance, customer: str, amount: int, at: str, due: str) -> str:
    invoice = finance.post(
        "/v1/invoices",
        {
            "customer_id": customer,
            "currency": "EUR",
            "lines": [{"description": "service", "quantity": 1, "unit_amount": amount}],
            "effective_at": at,
        },
    )
    finance.post(f"/v1/invoices/{invoice['id']}/finalize", {"due_date": due, "effective_at": at}, 200)
    return str(invoice["id"])


def test_receivables_age_by_due_date_and_shrink_with_partial_payments(finance: Finance) -> None:
    a = finance.customer("a")
    invoice = _open_invoice(finance, a, 10000, "2025-01-01T10:00:00Z", "2025-01-15")
    payment = finance.post(
        "/v1/payments",
        {
            "customer_id": a,
            "invoice_id": invoice,
            "amount": 4000,
            "currency": "EUR",
            "effective_at": "2025-02-01T10:00:00Z",
        },
    )
    finance.post(f"/v1/payments/{payment['id']}/succeed", {"effective_at": "2025-02-01T10:00:00Z"}, 200)

    before = finance.get("/v1/receivables", as_of="2024-12-31", currency="EUR")
    assert before["invoices"] == []
    current = finance.get("/v1/receivables", as_of="2025-01-15", currency="EUR")
    assert current["totals"]["current"] == 10000
    late = finance.get("/v1/receivables", as_of="2025-01-31", currency="EUR")
    assert late["totals"]["1_30"] == 10000
    assert late["invoices"][0]["days_overdue"] == 16
    paid_part = finance.get("/v1/receivables", as_of="2025-02-15", currency="EUR")
    assert paid_part["totals"]["31_60"] == 6000
    assert paid_part["invoices"][0]["amount_remaining"] == 6000
    much_later = finance.get("/v1/receivables", as_of="2025-06-01", currency="EUR")
    assert much_later["totals"]["90_plus"] == 6000


def test_voided_invoice_leaves_receivables_from_the_day_it_was_voided(finance: Finance) -> None:
    a = finance.customer("a")
    invoice = _open_invoice(finance, a, 5000, "2025-01-01T10:00:00Z", "2025-01-10")
    finance.post(f"/v1/invoices/{invoice}/void", {"effective_at": "2025-01-20T10:00:00Z"}, 200)

    assert finance.get("/v1/receivables", as_of="2025-01-19", currency="EUR")["totals"]["1_30"] == 5000
    assert finance.get("/v1/receivables", as_of="2025-01-20", currency="EUR")["invoices"] == []


QUOTA_PLAN = {
    **MONTHLY,
    "code": "metered",
    "quotas": {"api_calls": {"limit": 100, "aggregation": "sum", "enforcement": "hard"}},
}


@pytest.fixture
def metered(finance: Finance, container: Container) -> tuple[str, dict[str, str]]:
    finance.plans(QUOTA_PLAN)
    customer = finance.customer("acme")
    finance.subscribe(customer, "metered", "2025-01-10T00:00:00Z")
    _, raw = container.keys.mint(role="ingest", name="acme on-prem", customer_id=UUID(customer))
    return customer, bearer(raw)


def _usage(finance: Finance, key: dict[str, str], event_id: str, value: int, at: str, **data: Any) -> None:
    body = {
        "specversion": "1.0",
        "id": event_id,
        "source": "acme-app",
        "type": "usage.corrected" if "corrects" in data else "usage.recorded",
        "subject": "acme",
        "time": at,
        "data": {"metric": "api_calls", "value": value, **data},
    }
    response = finance.client.post(
        "/v1/events", json=body, headers={**key, "content-type": "application/cloudevents+json"}
    )
    assert response.status_code in (200, 201, 202), response.text
    finance.position = max(finance.position, response.json().get("position", 0))


def test_a_late_record_counts_in_its_own_period_and_a_correction_replaces_its_value(
    finance: Finance, metered: tuple[str, dict[str, str]]
) -> None:
    customer, key = metered
    _usage(finance, key, "u1", 30, "2025-02-12T00:00:00Z")
    _usage(finance, key, "u2", 20, "2025-01-20T00:00:00Z")  # late: January's period
    _usage(finance, key, "u3", 999, "2025-02-13T00:00:00Z")
    _usage(finance, key, "u3-fix", 5, "2025-02-14T00:00:00Z", corrects="u3")

    rows = finance.get("/v1/usage/quotas", customer_id=customer)["data"]

    periods = {r["period_start"][:10]: r for r in rows}
    assert periods["2025-01-10"]["used"] == 20
    assert periods["2025-02-10"]["used"] == 35
    assert periods["2025-02-10"]["limit"] == 100
    assert periods["2025-02-10"]["percent"] == 0.35
    assert periods["2025-02-10"]["state"] == "ok"


def test_a_hard_quota_refuses_once_exceeded(finance: Finance, metered: tuple[str, dict[str, str]]) -> None:
    customer, key = metered
    today = date.today()
    _usage(finance, key, "n1", 60, f"{today - timedelta(days=0)}T00:00:00Z")
    path = f"/v1/customers/{customer}/entitlements/api_calls"
    first = finance.client.get(path, params={"min_position": finance.position}, headers=key).json()
    assert first["allowed"] is True
    assert first["remaining"] == 40

    _usage(finance, key, "n2", 45, f"{today}T00:00:00Z")
    second = finance.client.get(path, params={"min_position": finance.position}, headers=key).json()
    assert second == {**second, "allowed": False, "used": 105, "remaining": 0}


def test_another_customers_key_cannot_read_entitlements(
    finance: Finance, metered: tuple[str, dict[str, str]], container: Container
) -> None:
    customer, _ = metered
    other = finance.customer("other")
    _, raw = container.keys.mint(role="ingest", name="other", customer_id=UUID(other))
    response = finance.client.get(f"/v1/customers/{customer}/entitlements/api_calls", headers=bearer(raw))
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")


def test_summary_and_queries_refuse_bad_input_with_problem_details(finance: Finance) -> None:
    finance.plans(MONTHLY)
    bad = finance.client.get(
        "/v1/metrics/mrr",
        params={"from": "2025-02-01", "to": "2025-01-01", "currency": "EUR"},
        headers=finance.admin,
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "to"
    summary = finance.get("/v1/metrics/summary", currency="EUR")
    assert summary["currency"] == "EUR"
    assert summary["mrr"] == 0


def test_receivables_page_through_every_unpaid_invoice_and_refuse_a_forged_cursor(finance: Finance) -> None:
    a = finance.customer("a")
    invoices = {_open_invoice(finance, a, 1000 * n, "2025-01-01T10:00:00Z", "2025-01-15") for n in (1, 2, 3)}
    seen: set[str] = set()
    cursor = None
    while True:
        page = finance.get(
            "/v1/receivables",
            as_of="2025-01-20",
            currency="EUR",
            limit=2,
            **({"cursor": cursor} if cursor else {}),
        )
        seen |= {i["invoice_id"] for i in page["invoices"]}
        assert page["totals"]["1_30"] == 6000
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == invoices
    forged = finance.client.get("/v1/receivables", params={"cursor": "bm90LW91cnM"}, headers=finance.admin)
    assert forged.status_code == 422
    assert forged.json()["errors"][0]["field"] == "cursor"
