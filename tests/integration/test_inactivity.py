"""customer_inactive (SPEC 10, seed 004): a customer with a live subscription and no usage for
LEDGER_INACTIVITY_DAYS raises a low alert, counted from its last usage or from its subscription's
start; its next usage resolves it. Time-driven: the test clock moves the ledger's days."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from infra.settings import Settings
from tests.integration.integration_helpers import Api, iso, running_ledger

PLAN = {"code": "hosting", "name": "Hosting", "currency": "EUR", "amount": 900, "interval": "month"}


@pytest.fixture
def api(settings: Settings, database_url: str) -> Iterator[Api]:
    # Months of unpaid invoices would otherwise end the subscriptions (dunning's final action).
    with running_ledger(settings, database_url, dunning_final_action="none") as running:
        running.post("/v1/plans", PLAN)
        yield running


def subscribe(api: Api, external_id: str) -> dict[str, Any]:
    customer = api.post("/v1/customers", {"external_id": external_id, "email": "a@b.dev", "currency": "EUR"})
    sub = api.post("/v1/subscriptions", {"customer_id": customer["id"], "plan_code": PLAN["code"]})
    return {
        "id": customer["id"],
        "subscription": sub["id"],
        "started": datetime.fromisoformat(sub["started_at"]),
    }


def use(api: Api, customer: dict[str, Any], at: datetime) -> None:
    api.post(
        "/v1/meter-events",
        {"customer_id": customer["id"], "metric": "requests", "value": 1, "timestamp": iso(at)},
        headers=api.admin,
    )


def inactive(api: Api) -> dict[str, str]:
    """customer id -> status of its customer_inactive alert."""
    api.run_policies()
    return {a["customer_id"]: a["status"] for a in api.alerts("customer_inactive")}


def test_a_customer_quiet_for_thirty_days_raises_a_low_alert_and_its_next_usage_resolves_it(api: Api) -> None:
    quiet = subscribe(api, "quiet")
    busy = subscribe(api, "busy")
    start = quiet["started"]
    for day in range(1, 29, 3):  # busy uses the service every few days
        api.advance(start + timedelta(days=day))
        use(api, busy, api.now())
    api.advance(start + timedelta(days=29))
    assert inactive(api) == {}

    api.advance(start + timedelta(days=31, hours=1))
    assert inactive(api) == {quiet["id"]: "open"}
    [alert] = api.alerts("customer_inactive")
    assert (alert["severity"], alert["subject"]) == ("low", f"customer:{quiet['id']}")
    assert "no usage for 30 days" in alert["message"]

    use(api, quiet, api.now())
    assert inactive(api) == {quiet["id"]: "resolved"}
    api.advance(start + timedelta(days=33))  # the next ticks leave it resolved
    assert inactive(api) == {quiet["id"]: "resolved"}


def test_quiet_time_counts_from_the_last_usage_and_a_quiet_spell_again_reopens_the_alert(api: Api) -> None:
    customer = subscribe(api, "acme")
    start = customer["started"]
    api.advance(start + timedelta(days=20))
    use(api, customer, api.now())  # last usage on day 20
    api.advance(start + timedelta(days=45))
    assert inactive(api) == {}  # 25 days since the last usage
    api.advance(start + timedelta(days=51, hours=1))
    assert inactive(api) == {customer["id"]: "open"}
    use(api, customer, api.now())
    assert inactive(api) == {customer["id"]: "resolved"}
    api.advance(start + timedelta(days=83))
    assert inactive(api) == {customer["id"]: "open"}  # quiet for 30 days again: one alert, reopened
    assert len(api.alerts("customer_inactive")) == 1


def test_an_old_record_arriving_late_does_not_end_the_quiet_spell(api: Api) -> None:
    customer = subscribe(api, "acme")
    start = customer["started"]
    api.advance(start + timedelta(days=40))
    assert inactive(api) == {customer["id"]: "open"}
    use(api, customer, start + timedelta(days=2))  # a backfilled record from day 2
    assert inactive(api) == {customer["id"]: "open"}


def test_a_customer_without_a_live_subscription_is_not_watched(api: Api) -> None:
    customer = subscribe(api, "leaving")
    api.advance(customer["started"] + timedelta(days=31, hours=1))
    assert inactive(api) == {customer["id"]: "open"}
    api.post(f"/v1/subscriptions/{customer['subscription']}/cancel", {"at_period_end": False}, 200)
    api.advance(customer["started"] + timedelta(days=33))
    assert inactive(api) == {customer["id"]: "resolved"}
    api.advance(customer["started"] + timedelta(days=90))
    assert inactive(api) == {customer["id"]: "resolved"}
    never = api.post("/v1/customers", {"external_id": "no-sub", "email": "n@b.dev", "currency": "EUR"})
    assert never["id"] not in inactive(api)


def test_the_window_follows_ledger_inactivity_days(settings: Settings, database_url: str) -> None:
    with running_ledger(settings, database_url, inactivity_days=7) as api:
        api.post("/v1/plans", PLAN)
        customer = subscribe(api, "acme")
        api.advance(customer["started"] + timedelta(days=6))
        assert inactive(api) == {}
        api.advance(customer["started"] + timedelta(days=8, hours=1))
        assert inactive(api) == {customer["id"]: "open"}
        assert "no usage for 7 days" in api.alerts("customer_inactive")[0]["message"]


def test_handling_the_log_again_raises_nothing_more(api: Api) -> None:
    customer = subscribe(api, "acme")
    api.advance(customer["started"] + timedelta(days=35))
    assert inactive(api) == {customer["id"]: "open"}
    with api.container.pool.connection() as conn:
        before: Any = conn.execute("SELECT count(*) AS n FROM events").fetchone()
        conn.execute("UPDATE projection_partitions SET position = 0, watermark = 0 WHERE name = 'policies'")
    assert inactive(api) == {customer["id"]: "open"}
    with api.container.pool.connection() as conn:
        after: Any = conn.execute("SELECT count(*) AS n FROM events").fetchone()
    assert after["n"] == before["n"]
