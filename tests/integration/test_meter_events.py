"""POST /v1/meter-events (SPEC 10, seed 003): an instance reports usage with the key scoped to its
customer; a report is idempotent on (customer, metric, timestamp), and bad reports record nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta, timezone
from typing import Any

import pytest

from domain import ids
from infra.settings import Settings
from tests.conftest import bearer, count_events
from tests.integration.integration_helpers import Api, iso, running_ledger
from tests.integration.test_onboarding import ACME, PLAN


@pytest.fixture
def api(settings: Settings, database_url: str) -> Iterator[Api]:
    with running_ledger(settings, database_url) as running:
        running.post("/v1/plans", PLAN)
        yield running


@pytest.fixture
def acme(api: Api) -> dict[str, Any]:
    answer = api.post("/v1/onboarding", ACME)
    return {"id": answer["customer_id"], "token": bearer(answer["ingest_key"])}


def records(api: Api, customer_id: str) -> list[dict[str, Any]]:
    with api.container.pool.connection() as conn:
        rows: Any = conn.execute(
            "SELECT payload->>'metric' AS metric, payload->>'value' AS value, occurred_at FROM events"
            " WHERE type = 'UsageRecord.Recorded' AND customer_id = %s ORDER BY position",
            (customer_id,),
        ).fetchall()
    return list(rows)


def test_a_user_count_is_recorded_as_active_users_of_the_keys_customer(
    api: Api, acme: dict[str, Any]
) -> None:
    at = api.now()
    body = {"user_count": 15, "timestamp": iso(at), "properties": {"deployment_type": "on-premise"}}
    answer = api.post("/v1/meter-events", body, headers=acme["token"])
    assert (answer["customer_id"], answer["metric"], answer["value"]) == (acme["id"], "active_users", "15")
    assert answer["properties"] == {"deployment_type": "on-premise"}
    [record] = records(api, acme["id"])
    assert (record["metric"], record["value"], record["occurred_at"]) == ("active_users", "15", at)
    [quota] = api.get("/v1/usage/quotas", customer_id=acme["id"], metric="active_users")["data"]
    assert (quota["used"], quota["limit"]) == (15, 50)


def test_a_metric_and_value_report_is_recorded_too(api: Api, acme: dict[str, Any]) -> None:
    body = {"metric": "api_calls", "value": "12.5", "timestamp": iso(api.now() - timedelta(hours=1))}
    answer = api.post("/v1/meter-events", body, headers=acme["token"])
    assert (answer["metric"], answer["value"]) == ("api_calls", "12.5")


def test_the_same_report_again_answers_the_same_and_is_recorded_once(api: Api, acme: dict[str, Any]) -> None:
    at = api.now() - timedelta(minutes=5)
    body = {"user_count": 15, "timestamp": iso(at)}
    first = api.post("/v1/meter-events", body, headers=acme["token"])
    events = count_events(api.container)
    # The same moment written with another offset is the same report.
    east = at.astimezone(timezone(timedelta(hours=2))).isoformat()
    again = api.post("/v1/meter-events", {"user_count": 15, "timestamp": east}, headers=acme["token"])
    assert again == first
    assert count_events(api.container) == events
    assert len(records(api, acme["id"])) == 1


def test_another_value_for_a_reported_moment_is_409_and_changes_nothing(
    api: Api, acme: dict[str, Any]
) -> None:
    at = iso(api.now() - timedelta(minutes=5))
    api.post("/v1/meter-events", {"user_count": 15, "timestamp": at}, headers=acme["token"])
    events = count_events(api.container)
    response = api.client.post(
        "/v1/meter-events", json={"user_count": 16, "timestamp": at}, headers=acme["token"]
    )
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == "value"
    assert count_events(api.container) == events


def test_another_customers_token_is_403_and_records_nothing(api: Api, acme: dict[str, Any]) -> None:
    globex = api.post("/v1/onboarding", {**ACME, "external_id": "org-globex", "name": "Globex"})
    events = count_events(api.container)
    body = {"customer_id": globex["customer_id"], "user_count": 3, "timestamp": iso(api.now())}
    response = api.client.post("/v1/meter-events", json=body, headers=acme["token"])
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert count_events(api.container) == events


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_count": 15}, "timestamp"),
        ({"user_count": -1, "timestamp": "2026-01-01T00:00:00Z"}, "user_count"),
        ({"metric": "api_calls", "value": -3, "timestamp": "2026-01-01T00:00:00Z"}, "value"),
        ({"metric": "api_calls", "value": "lots", "timestamp": "2026-01-01T00:00:00Z"}, "value"),
        ({"metric": "api_calls", "timestamp": "2026-01-01T00:00:00Z"}, "value"),
        ({"timestamp": "2026-01-01T00:00:00Z"}, "metric"),
        ({"user_count": 2, "value": 3, "timestamp": "2026-01-01T00:00:00Z"}, "user_count"),
        ({"user_count": 2, "timestamp": "1999-12-31T23:59:59Z"}, "timestamp"),
        ({"user_count": 2, "timestamp": "2999-01-01T00:00:00Z"}, "timestamp"),
        ({"user_count": 2, "timestamp": "2026-01-01T00:00:00Z", "organization": "x"}, "organization"),
    ],
)
def test_a_bad_report_is_422_naming_its_field_and_records_nothing(
    api: Api, acme: dict[str, Any], body: dict[str, Any], field: str
) -> None:
    events = count_events(api.container)
    response = api.client.post("/v1/meter-events", json=body, headers=acme["token"])
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in {e["field"] for e in response.json()["errors"]}, response.json()
    assert count_events(api.container) == events


def test_a_key_that_names_no_customer_must_name_one_and_a_read_key_may_not_report(
    api: Api, acme: dict[str, Any]
) -> None:
    at = iso(api.now() - timedelta(minutes=1))
    unscoped = api.key("ingest")
    missing = api.client.post("/v1/meter-events", json={"user_count": 1, "timestamp": at}, headers=unscoped)
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["field"] == "customer_id"
    named = api.post(
        "/v1/meter-events", {"customer_id": acme["id"], "user_count": 1, "timestamp": at}, headers=unscoped
    )
    assert named["customer_id"] == acme["id"]
    unknown = {"customer_id": str(ids.customer_id("nobody")), "user_count": 1, "timestamp": at}
    response = api.client.post("/v1/meter-events", json=unknown, headers=unscoped)
    assert response.status_code == 422
    assert response.json()["type"].endswith("unknown_customer")
    reader = api.client.post(
        "/v1/meter-events", json={"user_count": 1, "timestamp": at}, headers=api.key("read")
    )
    assert reader.status_code == 403
    assert api.client.post("/v1/meter-events", json={"user_count": 1, "timestamp": at}).status_code == 401
