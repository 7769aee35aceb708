"""Bad input gets a clear 4xx problem+json and records nothing."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from infra.bootstrap import Container
from tests.conftest import bearer, count_events

PLAN = {"code": "pro", "name": "Pro", "currency": "EUR", "amount": 2000, "interval": "month"}


@pytest.fixture
def eur_customer(client: TestClient, admin: dict[str, str]) -> Any:
    client.post("/v1/plans", json=PLAN, headers=admin)
    client.post("/v1/plans", json={**PLAN, "code": "pro-usd", "currency": "USD"}, headers=admin)
    return client.post(
        "/v1/customers", json={"external_id": "acme", "email": "a@acme.io", "currency": "EUR"}, headers=admin
    ).json()


def _void_invoice(client: TestClient, admin: dict[str, str], customer: Any) -> Any:
    invoice = client.post(
        "/v1/invoices",
        json={
            "customer_id": customer["id"],
            "currency": "EUR",
            "lines": [{"description": "x", "quantity": 1, "unit_amount": 100}],
        },
        headers=admin,
    ).json()
    client.post(f"/v1/invoices/{invoice['id']}/void", json={}, headers=admin)
    return invoice


def _assert_problem(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert body["status"] == status
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    return body


def test_unknown_plan_is_refused(
    client: TestClient, admin: dict[str, str], eur_customer: Any, container: Container
) -> None:
    before = count_events(container)
    response = client.post(
        "/v1/subscriptions", json={"customer_id": eur_customer["id"], "plan_code": "nope"}, headers=admin
    )
    _assert_problem(response, 422, "plan_code")
    assert count_events(container) == before


def test_plan_in_another_currency_than_the_customer_is_refused(
    client: TestClient, admin: dict[str, str], eur_customer: Any, container: Container
) -> None:
    before = count_events(container)
    response = client.post(
        "/v1/subscriptions", json={"customer_id": eur_customer["id"], "plan_code": "pro-usd"}, headers=admin
    )
    body = _assert_problem(response, 422, "plan_code")
    assert "USD" in body["detail"]
    assert count_events(container) == before


def test_payment_in_another_currency_than_the_customer_is_refused(
    client: TestClient, admin: dict[str, str], eur_customer: Any, container: Container
) -> None:
    before = count_events(container)
    response = client.post(
        "/v1/payments",
        json={"customer_id": eur_customer["id"], "amount": 100, "currency": "USD"},
        headers=admin,
    )
    _assert_problem(response, 422, "currency")
    assert count_events(container) == before


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/plans", {**PLAN, "amount": -1}, "amount"),
        ("/v1/plans", {**PLAN, "amount": 19.99}, "amount"),
        ("/v1/plans", {**PLAN, "currency": "EURO"}, "currency"),
        ("/v1/plans", {**PLAN, "currency": "XYZ"}, "currency"),
        ("/v1/plans", {**PLAN, "interval": "week"}, "interval"),
        ("/v1/plans", {**PLAN, "color": "blue"}, "color"),
        ("/v1/customers", {"external_id": "x", "email": "not-an-email", "currency": "EUR"}, "email"),
        ("/v1/customers", {"external_id": "x", "email": "x@x.io"}, "currency"),
        ("/v1/customers", {"external_id": "x", "email": "x@x.io", "currency": "EUR", "vip": True}, "vip"),
    ],
)
def test_invalid_fields_are_refused_with_the_field_named(
    client: TestClient, admin: dict[str, str], container: Container, path: str, body: Any, field: str
) -> None:
    before = count_events(container)
    _assert_problem(client.post(path, json=body, headers=admin), 422, field)
    assert count_events(container) == before


def test_negative_payment_amount_is_refused(
    client: TestClient, admin: dict[str, str], eur_customer: Any, container: Container
) -> None:
    before = count_events(container)
    response = client.post(
        "/v1/payments",
        json={"customer_id": eur_customer["id"], "amount": -5, "currency": "EUR"},
        headers=admin,
    )
    _assert_problem(response, 422, "amount")
    assert count_events(container) == before


def test_malformed_json_is_a_400(client: TestClient, admin: dict[str, str], container: Container) -> None:
    before = count_events(container)
    response = client.post(
        "/v1/plans", content=b'{"code": "pro", ', headers={**admin, "Content-Type": "application/json"}
    )
    _assert_problem(response, 400)
    assert count_events(container) == before


def test_missing_key_is_a_401(client: TestClient, container: Container) -> None:
    before = count_events(container)
    response = client.post("/v1/plans", json=PLAN)
    _assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
    _assert_problem(client.get("/v1/plans", headers=bearer("lk_admin_forged")), 401)
    assert count_events(container) == before


def test_wrong_role_is_a_403(client: TestClient, reader: dict[str, str], container: Container) -> None:
    before = count_events(container)
    _assert_problem(client.post("/v1/plans", json=PLAN, headers=reader), 403)
    assert client.get("/v1/plans", headers=reader).status_code == 200
    _, ingest_key = container.keys.mint(role="ingest", name="onprem")
    _assert_problem(client.get("/v1/plans", headers=bearer(ingest_key)), 403)
    assert count_events(container) == before


def test_unknown_resource_is_a_404(client: TestClient, admin: dict[str, str]) -> None:
    missing = "00000000-0000-0000-0000-000000000001"
    _assert_problem(client.get(f"/v1/payments/{missing}", headers=admin), 404)
    _assert_problem(client.post(f"/v1/payments/{missing}/succeed", json={}, headers=admin), 404)
    _assert_problem(client.get("/v1/plans/nope", headers=admin), 404)


@pytest.mark.parametrize(
    ("action", "body", "status"),
    [
        ("void", {}, 409),
        ("mark-uncollectible", {}, 409),
    ],
)
def test_refused_transitions_are_409(
    client: TestClient,
    admin: dict[str, str],
    eur_customer: Any,
    container: Container,
    action: str,
    body: Any,
    status: int,
) -> None:
    invoice = _void_invoice(client, admin, eur_customer)
    before = count_events(container)
    _assert_problem(client.post(f"/v1/invoices/{invoice['id']}/{action}", json=body, headers=admin), status)
    assert count_events(container) == before


def test_paying_a_void_invoice_is_refused(
    client: TestClient, admin: dict[str, str], eur_customer: Any, container: Container
) -> None:
    invoice = _void_invoice(client, admin, eur_customer)
    before = count_events(container)
    response = client.post(
        "/v1/payments",
        json={
            "customer_id": eur_customer["id"],
            "invoice_id": invoice["id"],
            "amount": 100,
            "currency": "EUR",
        },
        headers=admin,
    )
    _assert_problem(response, 409)
    assert count_events(container) == before


def test_refunding_more_than_was_paid_is_refused(
    client: TestClient, admin: dict[str, str], eur_customer: Any, container: Container
) -> None:
    payment = client.post(
        "/v1/payments",
        json={"customer_id": eur_customer["id"], "amount": 500, "currency": "EUR"},
        headers=admin,
    ).json()
    client.post(f"/v1/payments/{payment['id']}/succeed", json={}, headers=admin)
    before = count_events(container)
    _assert_problem(
        client.post(f"/v1/payments/{payment['id']}/refund", json={"amount": 501}, headers=admin), 409
    )
    assert count_events(container) == before
    partial = client.post(f"/v1/payments/{payment['id']}/refund", json={"amount": 200}, headers=admin).json()
    assert (partial["status"], partial["amount_refunded"]) == ("succeeded", 200)


def test_future_effective_at_is_refused(
    client: TestClient, admin: dict[str, str], container: Container
) -> None:
    before = count_events(container)
    response = client.post("/v1/plans", json={**PLAN, "effective_at": "2999-01-01T00:00:00Z"}, headers=admin)
    _assert_problem(response, 422, "effective_at")
    assert count_events(container) == before


def test_bad_cursor_and_bad_filter_are_422(client: TestClient, admin: dict[str, str]) -> None:
    _assert_problem(client.get("/v1/customers", params={"cursor": "garbage!"}, headers=admin), 422, "cursor")
    _assert_problem(client.get("/v1/payments", params={"status": "lost"}, headers=admin), 422, "status")


def test_read_waits_for_min_position_then_answers_503(
    client: TestClient, admin: dict[str, str], container: Container
) -> None:
    assert container.projection is not None
    container.projection.stop()  # the read models stop following the log
    written = client.post("/v1/plans", json=PLAN, headers=admin).json()
    container.settings.read_wait_timeout_seconds = 0.2
    response = client.get("/v1/plans", params={"min_position": written["position"]}, headers=admin)
    _assert_problem(response, 503)
    assert response.headers["retry-after"] == "1"
