"""Seed 003 (VaultAI) replayed through the API as its README describes it: an organisation
registers on its first admin's sign-in and gets a billing token and a 4-day trial; each day its
instance's cron reports the active user count with that token; the organisation asks for its
subscription status. The test clock moves the ledger's days; nothing sleeps."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from domain.periods import add_months
from infra.settings import Settings
from tests.conftest import bearer
from tests.integration.integration_helpers import Api, iso, running_ledger

ORGANIZATION_ID = "3f0c7a52-2d1e-4c1b-9a57-8e4f0b6d2c11"  # VaultAI's organization_id: our external_id
MANAGED_CLOUD = {
    "code": "managed-cloud-monthly",
    "name": "VaultAI Managed Cloud",
    "currency": "EUR",
    "amount": 0,  # no fee: billed on the active users it reports
    "interval": "month",
    "trial_days": 4,
    "quotas": {
        "active_users": {"limit": 100, "aggregation": "max"}
    },  # no hard limit (seed: "Pas de hard limits")
    "usage_prices": {"active_users": {"model": "per_unit", "unit_amount": 900}},
}
DAILY_ACTIVE_USERS = [3, 4, 4, 6, 8, 9, 9, 12, 12, 15]


@pytest.fixture
def api(settings: Settings, database_url: str) -> Iterator[Api]:
    with running_ledger(settings, database_url) as running:
        running.post("/v1/plans", MANAGED_CLOUD)
        yield running


def moment(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_an_organisation_registers_reports_daily_with_its_token_and_its_trial_ends_active(
    api: Api,
) -> None:
    # POST /api/organizations/register, as VaultAI's billing service calls it on the first sign-in.
    registered = api.post(
        "/v1/onboarding",
        {
            "external_id": ORGANIZATION_ID,
            "name": "ACME Corp",
            "email": "admin@acme.com",
            "plan_code": MANAGED_CLOUD["code"],
            "metadata": {"deployment_type": "on-premise", "plan_type": "managed-cloud"},
        },
    )
    customer, token = registered["customer_id"], bearer(registered["ingest_key"])
    started = moment(api.get(f"/v1/subscriptions/{registered['subscription_id']}")["started_at"])
    trial_end = moment(registered["trial_end"])
    assert trial_end == started + timedelta(days=4)

    status = api.get(f"/v1/customers/{customer}/status", headers=token)
    assert status["name"] == "ACME Corp"
    assert (status["subscription"]["status"], status["subscription"]["trial_active"]) == ("trialing", True)

    # The instance's daily cron (02:00): POST /api/meter-events with the billing token.
    for day, users in enumerate(DAILY_ACTIVE_USERS):
        at = started + timedelta(days=day, hours=2)
        api.advance(at)
        report = {"user_count": users, "timestamp": iso(at), "properties": {"deployment_type": "on-premise"}}
        api.post("/v1/meter-events", report, headers=token)

    status = api.get(f"/v1/customers/{customer}/status", headers=token)
    assert status == {
        "customer_id": customer,
        "name": "ACME Corp",
        "status": "active",
        "subscription": {
            "id": registered["subscription_id"],
            "status": "active",
            "plan_code": MANAGED_CLOUD["code"],
            "trial_active": False,
            "trial_end": status["subscription"]["trial_end"],
            "current_period_start": status["subscription"]["current_period_start"],
            "current_period_end": status["subscription"]["current_period_end"],
            "cancel_at_period_end": False,
        },
    }
    sub = status["subscription"]
    assert moment(sub["trial_end"]) == trial_end
    assert (moment(sub["current_period_start"]), moment(sub["current_period_end"])) == (
        trial_end,
        add_months(trial_end, 1),
    )
    # A read key sees the same status.
    assert api.get(f"/v1/customers/{customer}/status", headers=api.key("read")) == status

    # The usage read models: the trial's reports in the trial period, the rest in the first paid
    # one, each as the plan aggregates it (the most active users of the period).
    quotas = api.get("/v1/usage/quotas", customer_id=customer, metric="active_users")["data"]
    assert [(moment(q["period_start"]), moment(q["period_end"]), q["used"]) for q in quotas] == [
        (started, trial_end, max(DAILY_ACTIVE_USERS[:4])),
        (trial_end, add_months(trial_end, 1), max(DAILY_ACTIVE_USERS[4:])),
    ]
    entitlement = api.get(f"/v1/customers/{customer}/entitlements/active_users", headers=token)
    assert (entitlement["allowed"], entitlement["used"], entitlement["limit"]) == (True, 15, 100)


def test_an_instance_reporting_the_same_day_twice_is_counted_once(api: Api) -> None:
    registered = api.post(
        "/v1/onboarding",
        {
            "external_id": ORGANIZATION_ID,
            "name": "ACME Corp",
            "email": "a@acme.com",
            "plan_code": "managed-cloud-monthly",
        },
    )
    token = bearer(registered["ingest_key"])
    at = api.now()
    report = {"user_count": 7, "timestamp": iso(at)}
    first = api.post("/v1/meter-events", report, headers=token)
    assert api.post("/v1/meter-events", report, headers=token) == first  # the cron ran twice
    [quota] = api.get("/v1/usage/quotas", customer_id=registered["customer_id"])["data"]
    assert quota["used"] == 7
