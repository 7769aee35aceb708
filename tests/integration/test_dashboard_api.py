"""What the dashboard needs from the public API: customer search, the currencies by MRR, the
calling key's role, customer names in lists, the page itself, and seed 000's simulation
endpoints (only when LEDGER_ENABLE_SIMULATION is on)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from infra.bootstrap import Container, bootstrap
from infra.settings import Settings
from tests.conftest import bearer, count_events


def _post(client: TestClient, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    response = client.post(path, json=body, headers=headers)
    assert response.status_code in (200, 201), response.text
    return response.json()


def _plan(client: TestClient, admin: dict[str, str], code: str, currency: str, amount: int) -> None:
    body = {"code": code, "name": code, "currency": currency, "amount": amount, "interval": "month"}
    _post(client, "/v1/plans", body, admin)


def _customer(
    client: TestClient, admin: dict[str, str], external_id: str, name: str, currency: str = "EUR"
) -> Any:
    body = {
        "external_id": external_id,
        "email": f"{external_id}@example.com",
        "name": name,
        "currency": currency,
    }
    return _post(client, "/v1/customers", body, admin)


def _subscribe(client: TestClient, admin: dict[str, str], customer_id: str, plan: str) -> Any:
    return _post(client, "/v1/subscriptions", {"customer_id": customer_id, "plan_code": plan}, admin)


def _get(client: TestClient, path: str, headers: dict[str, str], **params: Any) -> Any:
    response = client.get(path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_customer_search_matches_name_email_or_external_id_in_any_case(
    client: TestClient, admin: dict[str, str], reader: dict[str, str]
) -> None:
    acme = _customer(client, admin, "acme-1", "Acme Rockets GmbH")
    _customer(client, admin, "globex", "Globex Corporation")
    last = _customer(client, admin, "initech_2", "Initech")

    def names(q: str) -> list[str]:
        page = _get(client, "/v1/customers", reader, q=q, min_position=last["position"])
        return sorted(c["name"] for c in page["data"])

    assert names("rocket") == ["Acme Rockets GmbH"]
    assert names("GLOBEX@EXAMPLE") == ["Globex Corporation"]
    assert names("initech_") == ["Initech"]
    assert names(acme["id"]) == ["Acme Rockets GmbH"]
    # % and _ are literal text, not wildcards
    assert names("%") == []
    assert names("acme_1") == []
    assert len(names("example.com")) == 3


def test_an_empty_search_is_refused_with_the_field_named(client: TestClient, reader: dict[str, str]) -> None:
    response = client.get("/v1/customers", params={"q": ""}, headers=reader)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in response.json()["errors"]] == ["q"]


def test_currencies_are_listed_with_their_mrr_the_largest_first(
    client: TestClient, admin: dict[str, str], reader: dict[str, str]
) -> None:
    _plan(client, admin, "eur", "EUR", 1000)
    _plan(client, admin, "usd", "USD", 5000)
    _plan(client, admin, "jpy", "JPY", 900)
    eur = _customer(client, admin, "e", "E", "EUR")
    usd = _customer(client, admin, "u", "U", "USD")
    _subscribe(client, admin, eur["id"], "eur")
    last = _subscribe(client, admin, usd["id"], "usd")

    answer = _get(client, "/v1/metrics/currencies", reader, min_position=last["position"])

    today = last["started_at"][:10]
    assert answer["data"] == [
        {"currency": "USD", "mrr": 5000, "first_day": today},
        {"currency": "EUR", "mrr": 1000, "first_day": today},
        {"currency": "JPY", "mrr": 0, "first_day": None},
    ]


def test_a_key_learns_its_own_role_and_what_it_may_do(
    client: TestClient, container: Container, admin: dict[str, str], reader: dict[str, str]
) -> None:
    assert _get(client, "/v1/api-keys/me", reader)["permissions"] == ["read"]
    me = _get(client, "/v1/api-keys/me", admin)
    assert me["role"] == "admin"
    assert me["permissions"] == ["admin", "audit", "ingest", "read"]
    _, raw = container.keys.mint(role="audit", name="auditor")
    assert _get(client, "/v1/api-keys/me", bearer(raw))["permissions"] == ["audit", "read"]

    wrong = client.get("/v1/api-keys/me", headers=bearer("lk_read_not-a-key"))
    assert wrong.status_code == 401
    assert wrong.headers["content-type"].startswith("application/problem+json")


def test_lists_name_the_customer_of_each_row(
    client: TestClient, admin: dict[str, str], reader: dict[str, str]
) -> None:
    _plan(client, admin, "pro", "EUR", 2000)
    customer = _customer(client, admin, "acme", "Acme SAS")
    sub = _subscribe(client, admin, customer["id"], "pro")
    payment = _post(
        client,
        "/v1/payments",
        {"customer_id": customer["id"], "amount": 2000, "currency": "EUR"},
        admin,
    )
    at = max(sub["position"], payment["position"])

    for path in ("/v1/subscriptions", "/v1/payments"):
        rows = _get(client, path, reader, min_position=at)["data"]
        assert [r["customer_name"] for r in rows] == ["Acme SAS"], path
    day = sub["started_at"][:10]
    movements = _get(client, "/v1/metrics/mrr/movements", reader, date=day, currency="EUR")
    assert [(m["customer_name"], m["kind"], m["amount"]) for m in movements["data"]] == [
        ("Acme SAS", "new", 2000)
    ]


def test_the_dashboard_page_and_its_assets_are_served_from_the_package(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert '<script type="module" src="/assets/app.js">' in page.text
    for asset, kind in (
        ("/assets/app.js", "javascript"),
        ("/assets/styles.css", "text/css"),
        ("/assets/vendor/uPlot.iife.min.js", "javascript"),
    ):
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert kind in response.headers["content-type"], asset
    assert client.get("/assets/nothing-here.js").status_code == 404


# ------------------------------------------------------------------ simulation (seed 000)


@pytest.fixture
def demo_client(settings: Settings, database_url: str) -> Iterator[tuple[TestClient, Container]]:
    enabled = settings.model_copy(update={"enable_simulation": True})
    built = bootstrap(enabled, database_url, run_projection=True)
    try:
        with TestClient(create_app(lambda: built), raise_server_exceptions=False) as test_client:
            yield test_client, built
    finally:
        built.close()


def test_simulation_endpoints_are_not_found_while_the_setting_is_off(
    client: TestClient, container: Container, admin: dict[str, str]
) -> None:
    before = count_events(container)
    for scenario in ("onboarding", "payment_failed", "churn"):
        response = client.post(f"/v1/simulation/{scenario}", json={}, headers=admin)
        assert response.status_code == 404, scenario
        assert response.headers["content-type"].startswith("application/problem+json")
    assert count_events(container) == before


def test_simulation_needs_an_admin_key(demo_client: tuple[TestClient, Container]) -> None:
    client, container = demo_client
    _, raw = container.keys.mint(role="read", name="reader")
    assert client.post("/v1/simulation/onboarding", headers=bearer(raw)).status_code == 403
    assert client.post("/v1/simulation/onboarding").status_code == 401


def test_onboarding_on_an_empty_ledger_defines_the_plans_and_a_subscribing_customer(
    demo_client: tuple[TestClient, Container],
) -> None:
    client, container = demo_client
    _, raw = container.keys.mint(role="admin", name="demo")
    admin = bearer(raw)

    onboarded = client.post("/v1/simulation/onboarding", headers=admin)  # an empty body is fine

    assert onboarded.status_code == 201, onboarded.text
    body = onboarded.json()
    customer = _get(client, f"/v1/customers/{body['customer_id']}", admin, min_position=body["position"])
    assert customer["metadata"]["simulated"] is True
    sub = _get(client, f"/v1/subscriptions/{body['subscription_id']}", admin)
    assert (sub["customer_id"], sub["plan_code"]) == (body["customer_id"], "pro-monthly-eur")
    assert len(_get(client, "/v1/plans", admin, limit=100)["data"]) == 24


def test_a_simulated_failed_payment_leaves_the_subscription_past_due_with_a_failed_payment(
    demo_client: tuple[TestClient, Container],
) -> None:
    client, container = demo_client
    _, raw = container.keys.mint(role="admin", name="demo")
    admin = bearer(raw)
    _plan(client, admin, "pro", "EUR", 2000)
    onboarded = _post(client, "/v1/simulation/onboarding", {"plan_code": "pro", "trial_days": 0}, admin)
    _get(client, "/v1/customers", admin, min_position=onboarded["position"])

    failed = _post(client, "/v1/simulation/payment_failed", {"customer_id": onboarded["customer_id"]}, admin)

    payment = _get(client, f"/v1/payments/{failed['payment_id']}", admin, min_position=failed["position"])
    assert (payment["status"], payment["amount"], payment["currency"]) == ("failed", 2000, "EUR")
    assert payment["failure_code"] == failed["failure_code"]
    sub = _get(client, f"/v1/subscriptions/{onboarded['subscription_id']}", admin)
    assert sub["status"] == "past_due"
    customer = _get(client, f"/v1/customers/{onboarded['customer_id']}", admin)
    assert customer["status"] == "at_risk"


def test_a_simulated_churn_cancels_a_subscription_now_and_its_mrr_leaves(
    demo_client: tuple[TestClient, Container],
) -> None:
    client, container = demo_client
    _, raw = container.keys.mint(role="admin", name="demo")
    admin = bearer(raw)
    _plan(client, admin, "pro", "EUR", 2000)
    onboarded = _post(client, "/v1/simulation/onboarding", {"plan_code": "pro", "trial_days": 0}, admin)
    _get(client, "/v1/customers", admin, min_position=onboarded["position"])

    churned = _post(client, "/v1/simulation/churn", {}, admin)

    assert churned["subscription_id"] == onboarded["subscription_id"]
    sub = _get(
        client, f"/v1/subscriptions/{churned['subscription_id']}", admin, min_position=churned["position"]
    )
    assert sub["status"] == "canceled"
    assert _get(client, "/v1/metrics/summary", admin, currency="EUR")["mrr"] == 0
    # nothing left to churn: a clear 409, nothing recorded
    before = count_events(container)
    again = client.post("/v1/simulation/churn", json={}, headers=admin)
    assert again.status_code == 409
    assert count_events(container) == before


def test_a_simulation_repeated_with_its_idempotency_key_records_nothing_more(
    demo_client: tuple[TestClient, Container],
) -> None:
    client, container = demo_client
    _, raw = container.keys.mint(role="admin", name="demo")
    headers = {**bearer(raw), "Idempotency-Key": "demo-onboarding-1"}
    first = client.post("/v1/simulation/onboarding", json={}, headers=headers)
    assert first.status_code == 201
    before = count_events(container)

    second = client.post("/v1/simulation/onboarding", json={}, headers=headers)

    assert second.json()["customer_id"] == first.json()["customer_id"]
    assert count_events(container) == before
