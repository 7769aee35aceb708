"""The door's limits (SPEC section 5 "Limits that hold on every path", issue 11): no request can
stop the ledger, and every refusal is a 4xx problem+json naming the field, with nothing recorded."""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse
from uuid import uuid4

import httpx
import pytest
from fastapi.testclient import TestClient

from application import commands as c
from infra.bootstrap import Container
from tests.conftest import count_events
from tests.integration.live_server import live_server

PLAN = {"code": "pro", "name": "Pro", "currency": "EUR", "amount": 2000, "interval": "month"}
CUSTOMER = {"external_id": "acme", "email": "billing@acme.io", "currency": "EUR"}


def _problem(response: httpx.Response, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"].endswith("/" + code), body
    assert body["status"] == status
    if field is not None:
        assert field in [e["field"] for e in body.get("errors", [])], body
    return body


def _context() -> c.CommandContext:
    return c.CommandContext(occurred_at=datetime.now(UTC), source="api", correlation_id=uuid4())


@pytest.fixture
def customer(client: TestClient, admin: dict[str, str]) -> dict[str, Any]:
    client.post("/v1/plans", json=PLAN, headers=admin)
    created: dict[str, Any] = client.post("/v1/customers", json=CUSTOMER, headers=admin).json()
    return created


# ------------------------------------------------------- observation 2: one request stops every write


def test_an_event_larger_than_the_socket_buffers_is_appended_and_writes_go_on(container: Container) -> None:
    """The append used to send LOCK TABLE and the INSERT's parameters in one psycopg pipeline;
    psycopg stopped flushing with bytes still unsent and waited for results, while PostgreSQL
    waited for those bytes holding the append lock: that write never answered and every later
    write timed out. 900 KB was enough over a Unix socket (embedded PostgreSQL); 16 MB is over
    TCP."""
    done: list[int] = []

    def register_big_customer() -> None:
        cmd = c.RegisterCustomer(
            external_id="big", email="big@acme.io", currency="EUR", metadata={"blob": "x" * 16_000_000}
        )
        done.append(container.ledger.register_customer(cmd, _context()).position)

    writer = threading.Thread(target=register_big_customer, daemon=True)
    writer.start()
    writer.join(timeout=60)  # a bound on a hang, not a measurement: it answers in about a second
    assert not writer.is_alive(), "the append of a large event never answered"
    small = c.RegisterCustomer(external_id="small", email="small@acme.io", currency="EUR")
    after = container.ledger.register_customer(small, _context())
    assert after.position == done[0] + 1


def test_a_body_over_the_limit_is_413_naming_the_body_and_records_nothing(
    container: Container, admin: dict[str, str]
) -> None:
    container.settings.max_body_bytes = 64 * 1024
    body = {**CUSTOMER, "metadata": {"blob": "x" * 100_000}}
    before = count_events(container)
    with live_server(container) as url, httpx.Client(base_url=url, headers=admin, timeout=30) as http:
        declared = http.post("/v1/customers", json=body)
        _problem(declared, 413, "payload_too_large", "body")

        def chunks() -> Any:  # no Content-Length: counted as it arrives
            raw = httpx.Request("POST", "/", json=body).content
            for start in range(0, len(raw), 8192):
                yield raw[start : start + 8192]

        chunked = http.post("/v1/customers", content=chunks(), headers={"Content-Type": "application/json"})
        _problem(chunked, 413, "payload_too_large", "body")
        assert count_events(container) == before
        # A body within the limit still goes through.
        assert http.post("/v1/customers", json=CUSTOMER).status_code == 201


def test_a_client_stalled_mid_body_never_blocks_another_writer(
    container: Container, admin: dict[str, str]
) -> None:
    with live_server(container) as url:
        address = urlparse(url)
        body = b'{"external_id": "slow", "email": "slow@acme.io", "currency": "EUR", "metadata": {"x": "'
        headers = (
            "POST /v1/customers HTTP/1.1\r\n"
            f"Host: {address.netloc}\r\n"
            f"Authorization: {admin['Authorization']}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body) * 2}\r\n\r\n"
        ).encode()
        with socket.create_connection((address.hostname, address.port)) as stalled:
            stalled.sendall(headers + body)  # half the body, then nothing
            # The bound is the client's timeout (httpx raises past it): a write behind a held
            # lock would wait for the lock timeout, 10 s.
            with httpx.Client(base_url=url, headers=admin, timeout=1.0) as http:
                for n in range(3):
                    other = {**CUSTOMER, "external_id": f"other-{n}"}
                    assert http.post("/v1/customers", json=other).status_code == 201
        assert count_events(container) == 3


# ---------------------------------------------------------------- money and quantities


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/plans", {**PLAN, "amount": "2000"}, "amount"),
        ("/v1/plans", {**PLAN, "amount": 2000.0}, "amount"),
        ("/v1/plans", {**PLAN, "amount": 10**15 + 1}, "amount"),
        ("/v1/plans", {**PLAN, "amount": True}, "amount"),
        (
            "/v1/plans",
            # A unit amount is a rate: a decimal string ("0.06") or a whole number, never a float.
            {**PLAN, "usage_prices": {"calls": {"model": "per_unit", "unit_amount": 0.06}}},
            "usage_prices.calls.unit_amount",
        ),
        (
            "/v1/plans",
            {**PLAN, "usage_prices": {"calls": {"model": "package", "package_size": 10**9 + 1}}},
            "usage_prices.calls.package_size",
        ),
        ("/v1/payments", {"amount": "100", "currency": "EUR"}, "amount"),
        ("/v1/payments", {"amount": 10**15 + 1, "currency": "EUR"}, "amount"),
        ("/v1/subscriptions", {"plan_code": "pro", "quantity": "2"}, "quantity"),
        ("/v1/subscriptions", {"plan_code": "pro", "quantity": 10**9 + 1}, "quantity"),
        ("/v1/invoices", {"currency": "EUR", "lines": [], "discount": 1.5}, "discount"),
    ],
)
def test_money_and_quantities_are_json_integers_within_their_bounds(
    client: TestClient,
    admin: dict[str, str],
    customer: dict[str, Any],
    container: Container,
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    if path != "/v1/plans":
        body = {"customer_id": customer["id"], **body}
    before = count_events(container)
    _problem(client.post(path, json=body, headers=admin), 422, "validation_error", field)
    assert count_events(container) == before


def test_an_invoice_line_whose_amount_would_leave_64_bits_is_422_before_it_is_attempted(
    client: TestClient, admin: dict[str, str], customer: dict[str, Any], container: Container
) -> None:
    before = count_events(container)
    huge = {"description": "x", "quantity": 10**9, "unit_amount": 10**15}
    draft = {"customer_id": customer["id"], "currency": "EUR", "lines": [huge]}
    _problem(client.post("/v1/invoices", json=draft, headers=admin), 422, "validation_error", "lines.0")
    many = {"description": "x", "quantity": 1, "unit_amount": 10**15}
    draft = {"customer_id": customer["id"], "currency": "EUR", "lines": [many, many]}
    _problem(client.post("/v1/invoices", json=draft, headers=admin), 422, "validation_error", "lines")
    assert count_events(container) == before


def test_a_subscription_whose_amount_times_quantity_would_pass_the_largest_amount_is_422(
    client: TestClient, admin: dict[str, str], customer: dict[str, Any], container: Container
) -> None:
    client.post("/v1/plans", json={**PLAN, "code": "whale", "amount": 10**15}, headers=admin)
    before = count_events(container)
    start = {"customer_id": customer["id"], "plan_code": "whale", "quantity": 2}
    _problem(client.post("/v1/subscriptions", json=start, headers=admin), 422, "invalid_value", "quantity")
    assert count_events(container) == before
    sub = client.post(
        "/v1/subscriptions", json={"customer_id": customer["id"], "plan_code": "pro"}, headers=admin
    ).json()
    change = {"plan_code": "whale", "quantity": 3}
    response = client.post(f"/v1/subscriptions/{sub['id']}/change", json=change, headers=admin)
    _problem(response, 422, "invalid_value", "quantity")


# ---------------------------------------------------------------- min_position


def test_min_position_above_the_head_is_422_position_not_found_at_once(
    client: TestClient, admin: dict[str, str], customer: dict[str, Any]
) -> None:
    response = client.get("/v1/customers", params={"min_position": 10**9}, headers=admin)
    body = _problem(response, 422, "position_not_found", "min_position")
    assert str(customer["position"]) in body["detail"]
    assert client.get("/v1/customers", params={"min_position": customer["position"]}, headers=admin).json()[
        "data"
    ]


# ---------------------------------------------------------------- plans


def test_re_posting_a_plan_code_with_other_terms_is_409_and_the_same_terms_answer_as_the_first_time(
    client: TestClient, admin: dict[str, str], container: Container
) -> None:
    first = client.post("/v1/plans", json=PLAN, headers=admin)
    assert first.status_code == 201
    again = client.post("/v1/plans", json=PLAN, headers=admin)
    assert (again.status_code, again.json()) == (201, first.json())
    before = count_events(container)
    repriced = client.post("/v1/plans", json={**PLAN, "amount": 2500}, headers=admin)
    body = _problem(repriced, 409, "already_exists", "code")
    assert "/v1/plans/pro/revise" in body["detail"]
    assert count_events(container) == before
    plan = client.get("/v1/plans/pro", params={"min_position": first.json()["position"]}, headers=admin)
    assert plan.json()["amount"] == 2000


def test_a_plan_is_revised_explicitly(
    client: TestClient, admin: dict[str, str], reader: dict[str, str]
) -> None:
    client.post("/v1/plans", json=PLAN, headers=admin)
    terms = {key: value for key, value in PLAN.items() if key != "code"}
    revised = client.post("/v1/plans/pro/revise", json={**terms, "amount": 2500}, headers=admin)
    assert revised.status_code == 200, revised.text
    assert (revised.json()["amount"], revised.json()["version"]) == (2500, 2)
    read = client.get("/v1/plans/pro", params={"min_position": revised.json()["position"]}, headers=admin)
    assert read.json()["amount"] == 2500
    _problem(client.post("/v1/plans/nope/revise", json=terms, headers=admin), 404, "not_found")
    _problem(client.post("/v1/plans/pro/revise", json=terms, headers=reader), 403, "forbidden")
    with_code = client.post("/v1/plans/pro/revise", json={**terms, "code": "pro"}, headers=admin)
    _problem(with_code, 422, "validation_error", "code")


# ---------------------------------------------------------------- action endpoints without a body


def test_action_endpoints_whose_fields_are_all_optional_accept_no_body_and_an_empty_body(
    client: TestClient, admin: dict[str, str], customer: dict[str, Any]
) -> None:
    def payment() -> str:
        made = client.post(
            "/v1/payments",
            json={"customer_id": customer["id"], "amount": 100, "currency": "EUR"},
            headers=admin,
        )
        return str(made.json()["id"])

    def invoice() -> str:
        line = {"description": "x", "quantity": 1, "unit_amount": 100}
        draft = {"customer_id": customer["id"], "currency": "EUR", "lines": [line]}
        return str(client.post("/v1/invoices", json=draft, headers=admin).json()["id"])

    empty = {**admin, "Content-Type": "application/json"}
    first, second = payment(), payment()
    assert client.post(f"/v1/payments/{first}/fail", headers=admin).json()["status"] == "failed"
    assert (
        client.post(f"/v1/payments/{first}/retry", headers=empty, content=b"").json()["status"] == "pending"
    )
    assert client.post(f"/v1/payments/{first}/succeed", headers=admin).json()["status"] == "succeeded"
    assert client.post(f"/v1/payments/{second}/succeed", headers=empty, content=b"").status_code == 200
    assert client.post(f"/v1/invoices/{invoice()}/void", headers=admin).json()["status"] == "void"
    to_write_off = invoice()
    client.post(f"/v1/invoices/{to_write_off}/finalize", json={"due_date": "2030-01-01"}, headers=admin)
    written_off = client.post(f"/v1/invoices/{to_write_off}/mark-uncollectible", headers=empty, content=b"")
    assert written_off.json()["status"] == "uncollectible"
    sub = client.post(
        "/v1/subscriptions", json={"customer_id": customer["id"], "plan_code": "pro"}, headers=admin
    ).json()
    renewed = client.post(f"/v1/subscriptions/{sub['id']}/renew", headers=admin)
    assert renewed.status_code in (200, 409), renewed.text  # a renewal not due yet is a refused transition
    # Fields that are given are still checked.
    fail = client.post(f"/v1/payments/{payment()}/fail", json={"failure_code": 5}, headers=admin)
    _problem(fail, 422, "validation_error", "failure_code")


# ---------------------------------------------------------------- error types match statuses


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/subscriptions", {"plan_code": "nope"}, "plan_code"),
        ("/v1/subscriptions", {"customer_id": str(uuid4()), "plan_code": "pro"}, "customer_id"),
        ("/v1/invoices", {"currency": "EUR", "subscription_id": str(uuid4())}, "subscription_id"),
        ("/v1/invoices", {"customer_id": str(uuid4()), "currency": "EUR"}, "customer_id"),
        ("/v1/payments", {"amount": 100, "currency": "EUR", "invoice_id": str(uuid4())}, "invoice_id"),
        ("/v1/payments", {"customer_id": str(uuid4()), "amount": 100, "currency": "EUR"}, "customer_id"),
    ],
)
def test_an_unknown_reference_in_a_body_is_422_unknown_reference_naming_the_field(
    client: TestClient,
    admin: dict[str, str],
    customer: dict[str, Any],
    container: Container,
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    body = {"customer_id": customer["id"], **body}
    if path == "/v1/invoices":
        body["lines"] = [{"description": "x", "quantity": 1, "unit_amount": 100}]
    before = count_events(container)
    _problem(client.post(path, json=body, headers=admin), 422, "unknown_reference", field)
    assert count_events(container) == before


def test_a_missing_resource_in_the_path_is_404_not_found(client: TestClient, admin: dict[str, str]) -> None:
    missing = uuid4()
    _problem(
        client.post(f"/v1/subscriptions/{missing}/change", json={"quantity": 2}, headers=admin),
        404,
        "not_found",
    )
    _problem(client.post(f"/v1/invoices/{missing}/void", headers=admin), 404, "not_found")
    _problem(client.get(f"/v1/customers/{missing}", headers=admin), 404, "not_found")
    _problem(client.get("/v1/nothing-here", headers=admin), 404, "not_found")


# ---------------------------------------------------------------- values the store could not hold


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**CUSTOMER, "name": "Acme\x00"}, "name"),
        ({**CUSTOMER, "metadata": {"plan\x00": "gold"}}, "metadata"),
        ({**CUSTOMER, "external_id": "acme\x00"}, "external_id"),
    ],
)
def test_a_nul_character_in_a_body_is_422_and_records_nothing(
    client: TestClient, admin: dict[str, str], container: Container, body: dict[str, Any], field: str
) -> None:
    before = count_events(container)
    _problem(client.post("/v1/customers", json=body, headers=admin), 422, "validation_error", field)
    assert count_events(container) == before


def test_an_infinite_number_in_a_body_is_422(client: TestClient, admin: dict[str, str]) -> None:
    raw = b'{"external_id": "acme", "email": "a@acme.io", "currency": "EUR", "metadata": {"x": 1e400}}'
    headers = {**admin, "Content-Type": "application/json"}
    _problem(client.post("/v1/customers", content=raw, headers=headers), 422, "validation_error", "metadata")


def test_a_nul_character_in_a_query_is_422_not_a_server_error(
    client: TestClient, admin: dict[str, str]
) -> None:
    _problem(client.get("/v1/alerts", params={"type": "\x00"}, headers=admin), 422, "invalid_value")
    _problem(client.get("/v1/plans/%00", headers=admin), 422, "invalid_value")


def test_invoice_line_periods_are_moments_in_utc_within_the_ledgers_days(
    client: TestClient, admin: dict[str, str], customer: dict[str, Any], container: Container
) -> None:
    def draft(**period: str) -> httpx.Response:
        line = {"description": "x", "quantity": 1, "unit_amount": 100, **period}
        body = {"customer_id": customer["id"], "currency": "EUR", "lines": [line]}
        return client.post("/v1/invoices", json=body, headers=admin)

    before = count_events(container)
    _problem(draft(period_start="0001-01-01T00:00:00+01:00"), 422, "validation_error", "lines.0.period_start")
    _problem(draft(period_end="9999-12-31T23:00:00-05:00"), 422, "validation_error", "lines.0.period_end")
    assert count_events(container) == before
    # Without an offset a moment is UTC, so it compares with one that has an offset.
    mixed = draft(period_start="2026-01-01T00:00:00", period_end="2026-02-01T00:00:00+00:00")
    assert mixed.status_code == 201, mixed.text
    assert mixed.json()["lines"][0]["period_start"].startswith("2026-01-01T00:00:00")


def test_a_query_day_outside_the_ledgers_days_is_422(client: TestClient, admin: dict[str, str]) -> None:
    churn = client.get("/v1/metrics/churn", params={"from": "0001-01-01", "currency": "EUR"}, headers=admin)
    _problem(churn, 422, "validation_error", "from")
    receivables = client.get("/v1/receivables", params={"as_of": "9999-12-31"}, headers=admin)
    _problem(receivables, 422, "validation_error", "as_of")
