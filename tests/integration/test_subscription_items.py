"""Add-on items through the API (SPEC 10, with SPEC 4's MRR and SPEC 7's billing), under the test
clock: an add-on bought part-way through a period is charged for the rest of it on the next
invoice and then billed in full with the plan each period; MRR rises by its monthly amount the
day it is bought (an expansion) and falls when it is removed (a contraction); bad requests are
refused with a problem and record nothing; the read models rebuilt from the log are the live
ones."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from domain.periods import add_months
from infra.bootstrap import CORE_PROJECTION
from projections.replay import replay
from projections.runner import head_position, wait_for_position
from tests.conftest import count_events, read_model_rows
from tests.integration.conftest import Clocked

PRO = {"code": "pro", "name": "Pro", "currency": "EUR", "amount": 3000, "interval": "month"}
STORAGE = {
    "code": "storage-10gb",
    "name": "Extra storage 10 GB",
    "currency": "EUR",
    "amount": 1000,
    "interval": "month",
}


def first_of_next_month(moment: datetime) -> datetime:
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return add_months(start, 1)


def middle(start: datetime, end: datetime) -> datetime:
    """Halfway through a period of whole days: a whole number of seconds."""
    return start + (end - start) / 2


def setup(api: Clocked) -> tuple[str, str, datetime]:
    """The plans, a customer without tax, and a Pro subscription started at midnight on the 1st
    of next month (the test clock moved there): its periods are calendar months."""
    api.post("/v1/plans", PRO)
    api.post("/v1/plans", STORAGE)
    customer = api.post(
        "/v1/customers", {"external_id": "team-acme", "email": "ops@acme.dev", "currency": "EUR"}
    )
    start = first_of_next_month(api.now + timedelta(days=1))
    api.advance(start)
    sub = api.post("/v1/subscriptions", {"customer_id": customer["id"], "plan_code": "pro"}, status=201)
    return customer["id"], sub["id"], start


def invoices(api: Clocked, customer: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = api.get("/v1/invoices", customer_id=customer, limit=100)["data"]
    return sorted(rows, key=lambda i: (i["created_at"], i["billing_reason"]))


def lines(invoice: dict[str, Any]) -> list[tuple[str, str, int]]:
    return [(line["kind"], line["description"], line["amount"]) for line in invoice["lines"]]


def mrr_row(api: Clocked, day: datetime) -> dict[str, Any]:
    rows = api.get(
        "/v1/metrics/mrr", **{"from": day.date().isoformat(), "to": day.date().isoformat()}, currency="EUR"
    )
    [row] = rows["data"]
    return dict(row)


def movements(api: Clocked, day: datetime) -> list[tuple[str, str, int, int]]:
    drill = api.get("/v1/metrics/mrr/movements", date=day.date().isoformat(), currency="EUR")
    return [(m["customer_id"], m["kind"], m["amount"], m["mrr_after"]) for m in drill["data"]]


def delete(api: Clocked, path: str, status: int = 200, **params: str) -> dict[str, Any]:
    response = api.client.delete(path, params=params, headers=api.admin)
    assert response.status_code == status, response.text
    answer: dict[str, Any] = response.json()
    api.position = max(api.position, int(answer.get("position", 0)))
    return answer


def assert_replay_equals_live(api: Clocked) -> None:
    position = head_position(api.container.pool)
    api.container.wake_projection()
    assert wait_for_position(api.container.pool, CORE_PROJECTION, position, 30)
    live = read_model_rows(api.container)
    settings = api.container.settings
    replay(api.container.address.conninfo(), settings.database_schema, CORE_PROJECTION, workers=2)
    assert read_model_rows(api.container) == live


def test_an_add_on_bought_mid_period_is_prorated_then_billed_in_full_and_counted_in_mrr(
    clocked: Clocked,
) -> None:
    api = clocked
    customer, sub, start = setup(api)
    second = add_months(start, 1)
    third = add_months(start, 2)
    fourth = add_months(start, 3)
    assert api.get(f"/v1/subscriptions/{sub}")["mrr"] == 3000

    # Halfway through the first period, the team buys 2 × 10 GB of storage.
    bought_at = middle(start, second)
    api.advance(bought_at)
    item = api.post(
        f"/v1/subscriptions/{sub}/items", {"plan_code": "storage-10gb", "quantity": 2}, status=201
    )
    assert (item["subscription_id"], item["plan_code"], item["quantity"], item["monthly_amount"]) == (
        sub,
        "storage-10gb",
        2,
        2000,
    )
    assert datetime.fromisoformat(item["added_at"]) == bought_at
    read = api.get(f"/v1/subscriptions/{sub}")
    assert read["mrr"] == 5000
    [listed] = read["items"]
    assert (listed["id"], listed["name"], listed["amount"], listed["currency"], listed["quantity"]) == (
        item["id"],
        "Extra storage 10 GB",
        1000,
        "EUR",
        2,
    )

    # MRR rises by the add-on's monthly amount the day it is bought: an expansion.
    day = mrr_row(api, bought_at)
    assert (day["mrr"], day["expansion"], day["new"]) == (5000, 2000, 0)
    assert movements(api, bought_at) == [(customer, "expansion", 2000, 5000)]
    assert mrr_row(api, start)["new"] == 3000

    # The next invoice: the plan and the add-on in advance, and the half period of the add-on
    # (previewed the same before it is made).
    upcoming = api.get(f"/v1/customers/{customer}/upcoming-invoice", subscription_id=sub)
    api.advance(second + timedelta(hours=2))
    cycle = invoices(api, customer)[-1]
    assert cycle["billing_reason"] == "subscription_cycle"
    assert lines(cycle) == [
        ("fee", "Pro × 1", 3000),
        ("fee", "Extra storage 10 GB × 2", 2000),
        ("proration", "Remaining time on Extra storage 10 GB × 2", 1000),
    ]
    assert lines(upcoming) == lines(cycle)
    proration = cycle["lines"][2]
    assert datetime.fromisoformat(proration["period_start"]) == bought_at
    assert datetime.fromisoformat(proration["period_end"]) == second
    item_fee = cycle["lines"][1]
    assert item_fee["source"]["item_id"] == item["id"]
    assert datetime.fromisoformat(item_fee["period_start"]) == second
    assert (cycle["status"], cycle["total"]) == ("open", 6000)

    # Then full lines, nothing prorated.
    api.advance(third + timedelta(hours=2))
    assert lines(invoices(api, customer)[-1]) == [
        ("fee", "Pro × 1", 3000),
        ("fee", "Extra storage 10 GB × 2", 2000),
    ]

    # Removed halfway through the third period: MRR contracts, the unused half is credited.
    removed_at = middle(third, fourth)
    api.advance(removed_at)
    removed = delete(api, f"/v1/subscriptions/{sub}/items/{item['id']}")
    assert (removed["id"], datetime.fromisoformat(removed["removed_at"])) == (item["id"], removed_at)
    read = api.get(f"/v1/subscriptions/{sub}")
    assert (read["items"], read["mrr"]) == ([], 3000)
    day = mrr_row(api, removed_at)
    assert (day["mrr"], day["contraction"]) == (3000, 2000)
    assert movements(api, removed_at) == [(customer, "contraction", 2000, 3000)]

    api.advance(fourth + timedelta(hours=2))
    assert lines(invoices(api, customer)[-1]) == [
        ("fee", "Pro × 1", 3000),
        ("proration", "Unused time on Extra storage 10 GB × 2", -1000),
    ]
    assert_replay_equals_live(api)


def test_an_item_quantity_change_is_prorated_and_moves_mrr(clocked: Clocked) -> None:
    api = clocked
    customer, sub, start = setup(api)
    second = add_months(start, 1)
    item = api.post(f"/v1/subscriptions/{sub}/items", {"plan_code": "storage-10gb"}, status=201)
    # Bought as the period starts: its whole first period is charged on the next invoice, made
    # right away by the quantity change (always_invoice) with that change's own proration.
    changed_at = middle(start, second)
    api.advance(changed_at)
    response = api.client.patch(
        f"/v1/subscriptions/{sub}/items/{item['id']}",
        json={"quantity": 3, "proration_behavior": "always_invoice"},
        headers=api.admin,
    )
    assert response.status_code == 200, response.text
    assert (response.json()["quantity"], response.json()["monthly_amount"]) == (3, 3000)
    api.position = max(api.position, response.json()["position"])

    [created, update] = invoices(api, customer)
    assert lines(created) == [("fee", "Pro × 1", 3000)]
    assert lines(update) == [
        ("proration", "Remaining time on Extra storage 10 GB × 1", 1000),
        ("proration", "Unused time on Extra storage 10 GB × 1", -500),
        ("proration", "Remaining time on Extra storage 10 GB × 3", 1500),
    ]
    assert update["billing_reason"] == "subscription_update"
    assert movements(api, changed_at) == [(customer, "expansion", 2000, 6000)]
    assert mrr_row(api, start)["new"] == 4000  # plan and one add-on, both from the first day
    assert_replay_equals_live(api)


def test_bad_item_requests_are_refused_and_change_nothing(clocked: Clocked) -> None:
    api = clocked
    customer, sub, _ = setup(api)
    api.post("/v1/plans", {**STORAGE, "code": "storage-usd", "currency": "USD"})
    api.post("/v1/plans", {**STORAGE, "code": "storage-yearly", "interval": "year", "amount": 10000})
    item = api.post(f"/v1/subscriptions/{sub}/items", {"plan_code": "storage-10gb"}, status=201)
    other = api.post("/v1/subscriptions", {"customer_id": customer, "plan_code": "pro"}, status=201)["id"]
    api.post(f"/v1/subscriptions/{other}/cancel", {"at_period_end": False})
    before = count_events(api.container)
    subscription_before = api.get(f"/v1/subscriptions/{sub}")

    def refused(method: str, path: str, body: dict[str, Any] | None, status: int, problem: str) -> None:
        response = api.client.request(method, path, json=body, headers=api.admin)
        assert response.status_code == status, (path, body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["type"].endswith(problem), response.text

    items = f"/v1/subscriptions/{sub}/items"
    refused(
        "POST", f"/v1/subscriptions/{uuid.uuid4()}/items", {"plan_code": "storage-10gb"}, 404, "not_found"
    )
    refused("POST", items, {"plan_code": "storage-usd"}, 422, "currency_mismatch")
    refused("POST", items, {"plan_code": "storage-10gb", "quantity": 0}, 422, "validation_error")
    refused("POST", items, {"plan_code": "storage-yearly"}, 422, "interval_mismatch")
    refused("POST", items, {"plan_code": "storage-10gb"}, 409, "item_exists")
    refused("POST", items, {"plan_code": "no-such-plan"}, 422, "unknown_reference")
    refused(
        "POST",
        f"/v1/subscriptions/{other}/items",
        {"plan_code": "storage-10gb"},
        409,
        "subscription_canceled",
    )
    refused("PATCH", f"{items}/{item['id']}", {"quantity": 0}, 422, "validation_error")
    refused("PATCH", f"{items}/{uuid.uuid4()}", {"quantity": 2}, 404, "unknown_item")
    refused("DELETE", f"{items}/{uuid.uuid4()}", None, 404, "unknown_item")
    refused("DELETE", f"/v1/subscriptions/{uuid.uuid4()}/items/{item['id']}", None, 404, "not_found")

    assert count_events(api.container) == before
    assert api.get(f"/v1/subscriptions/{sub}") == subscription_before
