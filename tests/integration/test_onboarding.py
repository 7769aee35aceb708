"""POST /v1/onboarding (SPEC 10, seed 003): one request registers the customer, starts its
subscription with its trial and issues its billing token (an ingest key scoped to it); the key is
shown exactly once, whatever retries, crashes and concurrent requests happen."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from application import commands as c
from domain import ids
from infra.bootstrap import Container
from infra.settings import Settings
from tests.conftest import bearer, count_events
from tests.integration.integration_helpers import Api, running_ledger

PLAN = {
    "code": "vaultai-managed",
    "name": "VaultAI managed cloud",
    "currency": "EUR",
    "amount": 0,
    "interval": "month",
    "trial_days": 4,
    "quotas": {"active_users": {"limit": 50, "aggregation": "max"}},
}


def moment(value: str) -> datetime:
    return datetime.fromisoformat(value)


ACME = {"external_id": "org-acme", "name": "ACME Corp", "email": "admin@acme.com", "plan_code": PLAN["code"]}


@pytest.fixture
def api(settings: Settings, database_url: str) -> Iterator[Api]:
    with running_ledger(settings, database_url) as running:
        running.post("/v1/plans", PLAN)
        yield running


def keys_of(container: Container, customer_id: str) -> list[dict[str, Any]]:
    return [k for k in container.keys.list() if str(k["customer_id"]) == customer_id]


def test_onboarding_registers_the_customer_starts_its_trial_and_shows_a_scoped_key_once(api: Api) -> None:
    answer = api.post("/v1/onboarding", {**ACME, "metadata": {"deployment_type": "on-premise"}})
    assert answer["ingest_key"].startswith("lk_ingest_")
    assert answer["ingest_key_issued_before"] is False
    customer, subscription = answer["customer_id"], answer["subscription_id"]

    read = api.get(f"/v1/customers/{customer}")
    assert (read["external_id"], read["name"], read["email"], read["currency"]) == (
        "org-acme",
        "ACME Corp",
        "admin@acme.com",
        "EUR",
    )
    assert read["metadata"] == {"deployment_type": "on-premise"}
    sub = api.get(f"/v1/subscriptions/{subscription}")
    assert (sub["status"], sub["plan_code"]) == ("trialing", PLAN["code"])
    assert (
        moment(sub["trial_end"])
        == moment(answer["trial_end"])
        == moment(sub["started_at"]) + timedelta(days=4)
    )

    [key] = keys_of(api.container, customer)
    assert (key["role"], str(key["id"])) == ("ingest", answer["ingest_key_id"])

    body = {**ACME, "metadata": {"deployment_type": "on-premise"}}
    again = api.client.post("/v1/onboarding", json=body, headers=api.admin)
    assert again.status_code == 200, again.text
    repeated = again.json()
    assert repeated["ingest_key"] is None
    assert repeated["ingest_key_issued_before"] is True
    assert {k: repeated[k] for k in ("customer_id", "subscription_id", "trial_end", "ingest_key_id")} == {
        k: answer[k] for k in ("customer_id", "subscription_id", "trial_end", "ingest_key_id")
    }
    assert len(keys_of(api.container, customer)) == 1


def test_the_trial_is_the_plans_unless_trial_days_says_otherwise(api: Api) -> None:
    planned = api.post("/v1/onboarding", ACME)
    chosen = api.post("/v1/onboarding", {**ACME, "external_id": "org-b", "trial_days": 10})
    none = api.post("/v1/onboarding", {**ACME, "external_id": "org-c", "trial_days": 0})
    for answer, days in ((planned, 4), (chosen, 10)):
        sub = api.get(f"/v1/subscriptions/{answer['subscription_id']}")
        assert moment(sub["trial_end"]) - moment(sub["started_at"]) == timedelta(days=days)
    assert none["trial_end"] is None
    assert api.get(f"/v1/subscriptions/{none['subscription_id']}")["status"] == "active"


def test_the_billing_token_reads_its_own_status_and_reports_usage_but_not_another_customers(api: Api) -> None:
    acme = api.post("/v1/onboarding", ACME)
    globex = api.post("/v1/onboarding", {**ACME, "external_id": "org-globex", "name": "Globex"})
    token = bearer(acme["ingest_key"])
    status = api.get(f"/v1/customers/{acme['customer_id']}/status", headers=token)
    assert status["subscription"]["status"] == "trialing"
    forbidden = api.client.get(f"/v1/customers/{globex['customer_id']}/status", headers=token)
    assert forbidden.status_code == 403
    assert forbidden.headers["content-type"] == "application/problem+json"
    # A billing token is an ingest key: it may not read the ledger at large, nor command it.
    assert api.client.get("/v1/customers", headers=token).status_code == 403
    assert (
        api.client.post("/v1/onboarding", json={**ACME, "external_id": "x"}, headers=token).status_code == 403
    )


def test_another_request_under_an_onboarded_external_id_is_409_and_changes_nothing(api: Api) -> None:
    api.post("/v1/onboarding", ACME)
    events = count_events(api.container)
    other = api.client.post("/v1/onboarding", json={**ACME, "email": "someone@else.io"}, headers=api.admin)
    assert other.status_code == 409, other.text
    assert other.json()["errors"][0]["field"] == "external_id"
    assert count_events(api.container) == events


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({**ACME, "plan_code": "nope"}, 422, "plan_code"),
        ({**ACME, "email": "not-an-address"}, 422, "email"),
        ({**ACME, "trial_days": -1}, 422, "trial_days"),
        ({k: v for k, v in ACME.items() if k != "external_id"}, 422, "external_id"),
    ],
)
def test_a_bad_onboarding_records_nothing_and_issues_no_key(
    api: Api, body: dict[str, Any], status: int, field: str
) -> None:
    events, keys = count_events(api.container), len(api.container.keys.list())
    response = api.client.post("/v1/onboarding", json=body, headers=api.admin)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in {e["field"] for e in response.json()["errors"]}
    assert (count_events(api.container), len(api.container.keys.list())) == (events, keys)


def test_a_crash_between_the_log_and_the_key_store_still_yields_a_usable_key_exactly_once(api: Api) -> None:
    # The process died after the append and before the key was stored: the log has the onboarding.
    ledger = api.container.ledger
    ctx = c.CommandContext(occurred_at=ledger.now())
    logged = ledger.onboard(c.Onboard(ACME["external_id"], ACME["name"], ACME["email"], PLAN["code"]), ctx)
    customer = logged.receipt["customer_id"]
    assert keys_of(api.container, customer) == []

    events = count_events(api.container)
    retried = api.post("/v1/onboarding", ACME)  # the client's retry
    assert retried["ingest_key"] is not None
    assert retried["customer_id"] == customer
    assert count_events(api.container) == events  # nothing registered twice
    status = api.get(f"/v1/customers/{customer}/status", headers=bearer(retried["ingest_key"]))
    assert status["customer_id"] == customer
    again = api.client.post("/v1/onboarding", json=ACME, headers=api.admin)
    assert (again.status_code, again.json()["ingest_key"]) == (200, None)


def test_concurrent_onboardings_of_one_organisation_show_its_key_exactly_once(api: Api) -> None:
    def onboard(_: int) -> Any:
        return api.client.post("/v1/onboarding", json=ACME, headers=api.admin)

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(onboard, range(6)))
    assert {a.status_code for a in answers} <= {200, 201}, [a.text for a in answers]
    shown = [a.json()["ingest_key"] for a in answers if a.json()["ingest_key"]]
    assert len(shown) == 1
    assert len({a.json()["subscription_id"] for a in answers}) == 1
    customer = answers[0].json()["customer_id"]
    assert len(keys_of(api.container, customer)) == 1
    api.position = max(a.json()["position"] for a in answers)  # read what they wrote
    subscriptions = api.get("/v1/subscriptions", customer_id=customer)["data"]
    assert len(subscriptions) == 1


def test_a_customer_registered_before_is_onboarded_as_it_is(api: Api) -> None:
    # BillingOps (or anyone) registered the organisation first, with its own name.
    api.post(
        "/v1/customers",
        {"external_id": "org-acme", "email": "ops@acme.com", "currency": "EUR", "name": "Acme"},
    )
    answer = api.post("/v1/onboarding", ACME)
    assert answer["customer_id"] == str(ids.customer_id("org-acme"))
    assert api.get(f"/v1/customers/{answer['customer_id']}")["email"] == "ops@acme.com"
    assert UUID(answer["subscription_id"]) == ids.onboarding_subscription_id("org-acme")


def test_a_customer_paying_in_another_currency_is_refused_and_nothing_is_recorded(api: Api) -> None:
    api.post("/v1/customers", {"external_id": "org-acme", "email": "ops@acme.com", "currency": "USD"})
    events = count_events(api.container)
    response = api.client.post("/v1/onboarding", json=ACME, headers=api.admin)
    assert response.status_code == 422, response.text
    assert response.json()["type"].endswith("currency_mismatch")
    assert count_events(api.container) == events
