"""Auditors read any aggregate's whole history and the global log, with who did what and why."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from infra.bootstrap import Container
from tests.conftest import bearer


def _auditor(container: Container) -> dict[str, str]:
    _, raw = container.keys.mint(role="audit", name="auditor")
    return bearer(raw)


def _customer(client: TestClient, headers: dict[str, str], external_id: str = "acme") -> Any:
    body = {"external_id": external_id, "email": f"{external_id}@example.com", "currency": "EUR"}
    response = client.post("/v1/customers", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def test_stream_history_shows_the_actor_and_reason_of_each_command(
    client: TestClient, container: Container
) -> None:
    key_id, raw = container.keys.mint(role="admin", name="ops")
    admin = bearer(raw)
    customer = _customer(client, admin)
    updated = client.patch(
        f"/v1/customers/{customer['id']}",
        json={"name": "Acme Corp"},
        headers={**admin, "X-Reason": "ticket #4411: legal name changed"},
    )
    assert updated.status_code == 200, updated.text

    response = client.get(f"/v1/audit/streams/{customer['id']}", headers=_auditor(container))

    assert response.status_code == 200, response.text
    events = response.json()["events"]
    assert [e["type"] for e in events] == ["Customer.Registered", "Customer.Updated"]
    assert [e["version"] for e in events] == [1, 2]
    registered, renamed = events
    assert registered["actor"] == renamed["actor"] == str(key_id)
    assert registered["reason"] is None
    assert renamed["reason"] == "ticket #4411: legal name changed"
    assert renamed["position"] == updated.json()["position"]
    assert renamed["payload"]["name"] == "Acme Corp"
    assert renamed["source"] == "api"
    assert renamed["customer_id"] == customer["id"]
    assert renamed["correlation_id"] is not None
    for field in ("occurred_at", "recorded_at", "causation_id", "schema_version"):
        assert field in renamed


def test_unknown_stream_is_a_404_problem(client: TestClient, container: Container) -> None:
    response = client.get(
        "/v1/audit/streams/00000000-0000-0000-0000-000000000000", headers=_auditor(container)
    )
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["title"] == "Not found"


def test_audit_endpoints_refuse_a_read_key(client: TestClient, reader: dict[str, str]) -> None:
    assert client.get("/v1/audit/log", headers=reader).status_code == 403
    stream = "/v1/audit/streams/00000000-0000-0000-0000-000000000000"
    assert client.get(stream, headers=reader).status_code == 403


def test_the_global_log_pages_through_every_event_once_in_position_order(
    client: TestClient, admin: dict[str, str], container: Container
) -> None:
    written = [_customer(client, admin, f"c{i}")["position"] for i in range(7)]
    auditor = _auditor(container)

    seen: list[int] = []
    after: int | None = 0
    while after is not None:
        page = client.get("/v1/audit/log", params={"after": after, "limit": 3}, headers=auditor)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["events"]) <= 3
        seen += [e["position"] for e in body["events"]]
        after = body["next_after"]

    assert seen == sorted(seen)
    assert len(seen) == len(set(seen))
    assert set(written) <= set(seen)


def test_log_refuses_a_bad_page_size(client: TestClient, container: Container) -> None:
    response = client.get("/v1/audit/log", params={"limit": 0}, headers=_auditor(container))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "limit"
