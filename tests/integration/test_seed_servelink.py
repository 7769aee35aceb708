"""Seed 004 (Servelink) replayed through the API: traffic is metered per project (a quota that
groups by the usage property `project`), each project warns at 80% and 95% and is blocked at
100% of the plan's limit on its own, with one alert per threshold, project and period."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from domain.periods import add_months
from infra.settings import Settings
from projections.replay import replay
from tests.conftest import read_model_rows
from tests.integration.integration_helpers import Api, iso, running_ledger

GB = 1_000_000_000
PRO = {
    "code": "servelink-pro",
    "name": "Servelink Pro",
    "currency": "EUR",
    "amount": 300,
    "interval": "month",
    "quotas": {
        "traffic_bytes": {"limit": GB, "aggregation": "sum", "enforcement": "hard", "group_by": "project"},
        "storage_bytes": {
            "limit": 5 * GB,
            "aggregation": "last",
            "enforcement": "hard",
            "group_by": "project",
        },
    },
}


@pytest.fixture
def api(settings: Settings, database_url: str) -> Iterator[Api]:
    with running_ledger(settings, database_url) as running:
        running.post("/v1/plans", PRO)
        yield running


@pytest.fixture
def team(api: Api) -> dict[str, Any]:
    """A Servelink team (the customer) on the Pro plan since now, and an ingest key for its
    traffic recorder."""
    customer = api.post(
        "/v1/customers", {"external_id": "team-acme", "email": "ops@acme.dev", "currency": "EUR"}
    )
    sub = api.post("/v1/subscriptions", {"customer_id": customer["id"], "plan_code": PRO["code"]})
    return {"id": customer["id"], "subscription": sub, "key": api.key("ingest", customer["id"])}


class Traffic:
    """Servelink's TrafficRecorderMiddleware: one usage.recorded CloudEvent per measurement."""

    def __init__(self, api: Api, team: dict[str, Any]) -> None:
        self.api, self.team, self.sent = api, team, 0

    def record(
        self, project: str | None, bytes_: int, at: datetime | None = None, metric: str = "traffic_bytes"
    ) -> None:
        self.sent += 1
        properties = {"project": project} if project is not None else {}
        event = {
            "specversion": "1.0",
            "id": f"traffic-{self.sent}",
            "source": "servelink/traffic-recorder",
            "type": "usage.recorded",
            "time": iso(at or self.api.now()),
            "data": {"metric": metric, "value": bytes_, "properties": properties},
        }
        response = self.api.client.post(
            "/v1/events",
            json=event,
            headers={**self.team["key"], "Content-Type": "application/cloudevents+json"},
        )
        assert response.status_code == 202, response.text
        self.api.position = max(self.api.position, response.json()["position"])
        self.api.run_policies()


def entitled(
    api: Api, team: dict[str, Any], project: str | None, metric: str = "traffic_bytes"
) -> dict[str, Any]:
    params = {"group": project} if project is not None else {}
    answer: dict[str, Any] = api.get(
        f"/v1/customers/{team['id']}/entitlements/{metric}", headers=team["key"], **params
    )
    return answer


def thresholds(api: Api) -> Counter[tuple[str, str]]:
    """(subject without the period, severity) of every quota alert: one each is one alert."""
    return Counter(
        (a["subject"].split("%:", 1)[0] + "%", a["severity"]) for a in api.alerts("quota_threshold")
    )


def test_two_projects_cross_80_95_and_100_percent_independently_and_the_full_one_is_blocked(
    api: Api, team: dict[str, Any]
) -> None:
    traffic = Traffic(api, team)
    traffic.record("alpha", 850_000_000)  # alpha 85%
    traffic.record("beta", 200_000_000)  # beta 20%
    assert thresholds(api) == {("traffic_bytes:project=alpha:80%", "medium"): 1}

    traffic.record("alpha", 100_000_000)  # alpha 95%
    traffic.record("beta", 700_000_000)  # beta 90%
    traffic.record("alpha", 60_000_000)  # alpha 101%
    traffic.record("alpha", 10_000_000)  # beyond: nothing new
    traffic.record("beta", 10_000_000)  # beta 91%: nothing new
    assert thresholds(api) == {
        ("traffic_bytes:project=alpha:80%", "medium"): 1,
        ("traffic_bytes:project=alpha:95%", "high"): 1,
        ("traffic_bytes:project=alpha:100%", "critical"): 1,
        ("traffic_bytes:project=beta:80%", "medium"): 1,
    }
    for alert in api.alerts("quota_threshold"):
        assert alert["customer_id"] == team["id"]
        assert alert["status"] == "open"

    alpha, beta = entitled(api, team, "alpha"), entitled(api, team, "beta")
    assert (alpha["group"], alpha["allowed"], alpha["used"], alpha["remaining"]) == (
        "alpha",
        False,
        1_020_000_000,
        0,
    )
    assert (beta["group"], beta["allowed"], beta["used"], beta["remaining"]) == (
        "beta",
        True,
        910_000_000,
        90_000_000,
    )
    fresh = entitled(api, team, "gamma")  # a project without traffic yet
    assert (fresh["allowed"], fresh["used"], fresh["limit"]) == (True, 0, GB)

    rows = api.get("/v1/usage/quotas", customer_id=team["id"], metric="traffic_bytes")["data"]
    assert [(r["group"], r["group_by"], r["used"], r["state"]) for r in rows] == [
        ("alpha", "project", 1_020_000_000, "exceeded"),
        ("beta", "project", 910_000_000, "warning"),
    ]
    only_beta = api.get("/v1/usage/quotas", customer_id=team["id"], group="beta")["data"]
    assert [(r["metric"], r["group"]) for r in only_beta] == [("traffic_bytes", "beta")]


def test_each_period_has_its_own_alerts_per_project(api: Api, team: dict[str, Any]) -> None:
    traffic = Traffic(api, team)
    start = datetime.fromisoformat(team["subscription"]["current_period_start"])
    traffic.record("alpha", 900_000_000)
    api.advance(add_months(start, 1) + timedelta(hours=1))
    assert entitled(api, team, "alpha")["used"] == 0  # a new period
    traffic.record("alpha", 900_000_000)
    subjects = sorted(a["subject"] for a in api.alerts("quota_threshold"))
    assert len(subjects) == 2
    assert all(s.startswith("traffic_bytes:project=alpha:80%:") for s in subjects)
    assert subjects[0] != subjects[1]  # the period names them apart


def test_usage_without_the_grouping_property_counts_under_the_empty_group(
    api: Api, team: dict[str, Any]
) -> None:
    traffic = Traffic(api, team)
    traffic.record(None, 850_000_000)  # no project
    traffic.record("alpha", 100_000_000)
    rows = api.get("/v1/usage/quotas", customer_id=team["id"], metric="traffic_bytes")["data"]
    assert [(r["group"], r["used"]) for r in rows] == [("", 850_000_000), ("alpha", 100_000_000)]
    assert entitled(api, team, None)["used"] == 850_000_000  # asked without a group: the "" group
    assert entitled(api, team, "")["used"] == 850_000_000
    assert thresholds(api) == {("traffic_bytes:project=:80%", "medium"): 1}


def test_a_group_by_naming_a_property_the_usage_lacks_counts_everything_under_the_empty_group(
    api: Api,
) -> None:
    plan = {
        **PRO,
        "code": "by-region",
        "quotas": {"traffic_bytes": {**PRO["quotas"]["traffic_bytes"], "group_by": "region"}},
    }
    api.post("/v1/plans", plan)
    customer = api.post("/v1/customers", {"external_id": "team-b", "email": "b@b.dev", "currency": "EUR"})
    api.post("/v1/subscriptions", {"customer_id": customer["id"], "plan_code": "by-region"})
    team = {"id": customer["id"], "key": api.key("ingest", customer["id"])}
    traffic = Traffic(api, team)
    traffic.record("alpha", 500_000_000)
    traffic.record("beta", 400_000_000)
    rows = api.get("/v1/usage/quotas", customer_id=team["id"])["data"]
    assert [(r["group"], r["group_by"], r["used"]) for r in rows] == [("", "region", 900_000_000)]
    assert thresholds(api) == {("traffic_bytes:region=:80%", "medium"): 1}
    assert entitled(api, team, "alpha")["used"] == 0  # no usage names region alpha


def test_the_plans_documentation_says_where_usage_without_the_property_counts(api: Api) -> None:
    document = api.client.get("/openapi.json").json()
    described = document["components"]["schemas"]["Quota"]["properties"]["group_by"]["description"]
    assert 'counts under the group "" (empty string)' in described


def test_a_quota_that_does_not_group_ignores_the_group_asked_for(api: Api) -> None:
    flat = {**PRO, "code": "flat", "quotas": {"traffic_bytes": {"limit": GB, "enforcement": "hard"}}}
    api.post("/v1/plans", flat)
    customer = api.post("/v1/customers", {"external_id": "team-c", "email": "c@c.dev", "currency": "EUR"})
    api.post("/v1/subscriptions", {"customer_id": customer["id"], "plan_code": "flat"})
    team = {"id": customer["id"], "key": api.key("ingest", customer["id"])}
    traffic = Traffic(api, team)
    traffic.record("alpha", 850_000_000)
    traffic.record("beta", 50_000_000)
    answer = entitled(api, team, "alpha")
    assert (answer["group"], answer["used"]) == ("", 900_000_000)
    # An ungrouped quota's alert subject is as it always was: metric, threshold, period.
    [alert] = api.alerts("quota_threshold")
    assert alert["subject"].startswith("traffic_bytes:80%:")


def test_revising_the_grouping_regroups_the_usage_and_a_replay_gives_the_same_rows(
    api: Api, team: dict[str, Any]
) -> None:
    traffic = Traffic(api, team)
    traffic.record("alpha", 300_000_000)
    traffic.record("beta", 200_000_000)
    traffic.record("alpha", 50_000_000, metric="storage_bytes")
    by_region = {k: v for k, v in PRO.items() if k != "code"}
    by_region["quotas"] = {
        "traffic_bytes": {"limit": GB, "enforcement": "hard"},  # no longer per project
        "storage_bytes": {**PRO["quotas"]["storage_bytes"], "group_by": "region"},
    }
    api.post(f"/v1/plans/{PRO['code']}/revise", by_region, 200)
    rows = api.get("/v1/usage/quotas", customer_id=team["id"])["data"]
    assert [(r["metric"], r["group"], r["used"]) for r in rows] == [
        ("storage_bytes", "", 50_000_000),
        ("traffic_bytes", "", 500_000_000),
    ]
    api.post(f"/v1/plans/{PRO['code']}/revise", {k: v for k, v in PRO.items() if k != "code"}, 200)
    rows = api.get("/v1/usage/quotas", customer_id=team["id"], metric="traffic_bytes")["data"]
    assert [(r["group"], r["used"]) for r in rows] == [("alpha", 300_000_000), ("beta", 200_000_000)]

    live = read_model_rows(api.container, ("rm_usage_records", "rm_usage_periods"))
    container = api.container
    replay(container.address.conninfo(), container.settings.database_schema, "core", workers=2)
    assert read_model_rows(api.container, ("rm_usage_records", "rm_usage_periods")) == live


def test_a_plan_whose_group_by_is_not_a_property_name_is_refused(api: Api) -> None:
    for group_by in ("", "x" * 101, 7):
        plan = {**PRO, "code": "bad", "quotas": {"traffic_bytes": {"limit": 1, "group_by": group_by}}}
        response = api.client.post("/v1/plans", json=plan, headers=api.admin)
        assert response.status_code == 422, response.text
        assert "quotas.traffic_bytes.group_by" in {e["field"] for e in response.json()["errors"]}


# Servelink's add-on resources ("Ressources additionnelles: RAM, CPU, Trafic, Stockage"), each a plan
# of its own put on the team's subscription beside Pro (SPEC 10).
EXTRA_STORAGE = {
    "code": "servelink-extra-storage",
    "name": "Extra storage 10 GB",
    "currency": "EUR",
    "amount": 500,
    "interval": "month",
}


def test_an_add_on_resource_bought_mid_period_is_prorated_then_billed_with_the_plan_and_in_mrr(
    api: Api, team: dict[str, Any]
) -> None:
    api.post("/v1/plans", EXTRA_STORAGE)
    sub = team["subscription"]
    start = datetime.fromisoformat(sub["current_period_start"])
    end = add_months(start, 1)
    halfway = start + (end - start) / 2
    api.advance(halfway)
    item = api.post(
        f"/v1/subscriptions/{sub['id']}/items", {"plan_code": EXTRA_STORAGE["code"], "quantity": 2}
    )
    assert (item["quantity"], item["monthly_amount"]) == (2, 1000)

    read = api.get(f"/v1/subscriptions/{sub['id']}")
    assert ([i["plan_code"] for i in read["items"]], read["mrr"]) == ([EXTRA_STORAGE["code"]], 1300)
    day = halfway.date().isoformat()
    [row] = api.get("/v1/metrics/mrr", **{"from": day, "to": day}, currency="EUR")["data"]
    assert (row["mrr"], row["expansion"]) == (1300, 1000)

    api.advance(end + timedelta(hours=2))
    cycle = next(
        i
        for i in api.get("/v1/invoices", customer_id=team["id"])["data"]
        if i["billing_reason"] == "subscription_cycle"
    )
    assert [(line["kind"], line["description"], line["amount"]) for line in cycle["lines"]] == [
        ("fee", "Servelink Pro × 1", 300),
        ("fee", "Extra storage 10 GB × 2", 1000),
        ("proration", "Remaining time on Extra storage 10 GB × 2", 500),
    ]
