"""The ledger's clock through the API: backdated writes answer caught up, scheduled cancellations
end the period that holds the request, the test clock moves now forward and everything due by
then is recorded at the moment it fell due, exactly once (SPEC 3, "The ledger's clock")."""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from application import commands as c
from domain.clock import TestClock
from infra.bootstrap import Container, bootstrap
from infra.settings import Settings
from tests.conftest import bearer, count_events
from tests.integration.test_metrics_api import MONTHLY, Finance

NOW = datetime.now(UTC).replace(microsecond=0)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def moment(value: str) -> datetime:
    return datetime.fromisoformat(value)


def a_month_after(at: datetime) -> datetime:
    """The same day of the next month, clamped to its last day."""
    year, month = (at.year + 1, 1) if at.month == 12 else (at.year, at.month + 1)
    return at.replace(year=year, month=month, day=min(at.day, calendar.monthrange(year, month)[1]))


@pytest.fixture
def audited(client: TestClient, container: Container) -> Finance:
    _, raw = container.keys.mint(role="admin", name="tests")
    _, audit = container.keys.mint(role="audit", name="auditor")
    finance = Finance(client, bearer(raw))
    finance.auditor = bearer(audit)  # type: ignore[attr-defined]
    return finance


def audit_stream(finance: Finance, stream_id: str) -> list[tuple[str, datetime]]:
    response = finance.client.get(
        f"/v1/audit/streams/{stream_id}",
        params={"min_position": finance.position},
        headers=finance.auditor,  # type: ignore[attr-defined]
    )
    assert response.status_code == 200, response.text
    return [(e["type"], moment(e["occurred_at"])) for e in response.json()["events"]]


# ---------------------------------------------------------------- backdated writes


def test_a_subscription_started_100_days_ago_with_a_14_day_trial_answers_active_in_its_right_period(
    audited: Finance,
) -> None:
    audited.plans(MONTHLY)
    customer = audited.customer("acme")
    started = NOW - timedelta(days=100)
    answer = audited.post(
        "/v1/subscriptions",
        {"customer_id": customer, "plan_code": "pro", "trial_days": 14, "effective_at": iso(started)},
    )
    trial_end = started + timedelta(days=14)
    assert answer["status"] == "active"
    assert moment(answer["trial_end"]) == trial_end
    assert moment(answer["current_period_start"]) <= NOW < moment(answer["current_period_end"])

    read = audited.get(f"/v1/subscriptions/{answer['id']}")
    assert (read["status"], read["current_period_start"], read["current_period_end"]) == (
        "active",
        answer["current_period_start"],
        answer["current_period_end"],
    )
    history = audit_stream(audited, answer["id"])
    assert history[0] == ("Subscription.Started", started)
    assert history[1] == ("Subscription.TrialEnded", trial_end)
    renewals = [at for kind, at in history[2:] if kind == "Subscription.Renewed"]
    assert renewals and renewals[0] > trial_end and renewals[-1] == moment(answer["current_period_start"])
    assert all(at <= NOW for _, at in history)


def test_cancel_at_period_end_of_a_backdated_subscription_ends_the_period_holding_the_request(
    audited: Finance,
) -> None:
    audited.plans(MONTHLY)
    customer = audited.customer("acme")
    started = datetime(2025, 1, 31, 10, tzinfo=UTC)
    sub = audited.subscribe(customer, "pro", iso(started))
    # Requested on April 15: the period [Mar 31, Apr 30) ends it, not the first one nor today's.
    answer = audited.post(
        f"/v1/subscriptions/{sub}/cancel",
        {"at_period_end": True, "effective_at": "2025-04-15T08:00:00Z"},
        200,
    )
    assert answer["status"] == "canceled"
    assert moment(answer["ended_at"]) == datetime(2025, 4, 30, 10, tzinfo=UTC)
    assert moment(answer["cancel_at"]) == datetime(2025, 4, 30, 10, tzinfo=UTC)

    rows = audited.series("2025-04-29", "2025-05-01")
    assert [rows[date(2025, 4, d)]["mrr"] for d in (29, 30)] == [2000, 0]
    assert rows[date(2025, 4, 30)]["churn"] == 2000
    assert audited.get(f"/v1/customers/{customer}")["status"] == "churned"


def test_a_scheduled_cancellation_in_the_future_keeps_contributing_until_it_takes_effect(
    audited: Finance,
) -> None:
    audited.plans(MONTHLY)
    customer = audited.customer("acme")
    sub = audited.subscribe(customer, "pro", iso(NOW - timedelta(days=10)))
    answer = audited.post(f"/v1/subscriptions/{sub}/cancel", {"at_period_end": True}, 200)
    assert answer["status"] == "active"
    assert moment(answer["cancel_at"]) == moment(answer["current_period_end"]) > NOW
    assert audited.get(f"/v1/customers/{customer}")["mrr"] == 2000


def test_a_customer_whose_only_subscription_was_canceled_reads_churned(audited: Finance) -> None:
    audited.plans(MONTHLY)
    customer = audited.customer("acme")
    sub = audited.subscribe(customer, "pro", iso(NOW - timedelta(days=40)), trial_days=14)
    audited.post(f"/v1/subscriptions/{sub}/cancel", {"at_period_end": False}, 200)
    assert audited.get(f"/v1/customers/{customer}")["status"] == "churned"
    assert audited.get("/v1/customers", status="churned")["data"][0]["id"] == customer


def test_a_change_backdated_before_an_earlier_change_is_refused_and_records_nothing(
    audited: Finance, container: Container
) -> None:
    audited.plans(MONTHLY)
    customer = audited.customer("acme")
    sub = audited.subscribe(customer, "pro", "2025-03-01T00:00:00Z")
    audited.post(
        f"/v1/subscriptions/{sub}/change", {"quantity": 3, "effective_at": "2025-05-01T00:00:00Z"}, 200
    )
    before = count_events(container)
    response = audited.client.post(
        f"/v1/subscriptions/{sub}/change",
        json={"quantity": 2, "effective_at": "2025-04-01T00:00:00Z"},
        headers=audited.admin,
    )
    assert response.status_code == 409
    assert response.json()["type"].endswith("change_out_of_order")
    assert count_events(container) == before


# ---------------------------------------------------------------- business time


@pytest.mark.parametrize("when", ["1999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "9999-12-31T00:00:00Z"])
def test_a_business_time_outside_the_window_is_refused_with_time_out_of_range(
    audited: Finance, container: Container, when: str
) -> None:
    before = count_events(container)
    response = audited.client.post(
        "/v1/customers",
        json={"external_id": "late", "email": "l@x.io", "currency": "EUR", "effective_at": when},
        headers=audited.admin,
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"].endswith("time_out_of_range")
    assert problem["errors"][0]["field"] == "effective_at"
    assert count_events(container) == before


def test_a_business_time_a_few_minutes_ahead_is_accepted(audited: Finance) -> None:
    ahead = datetime.now(UTC) + timedelta(minutes=4)
    audited.post(
        "/v1/customers",
        {"external_id": "fast", "email": "f@x.io", "currency": "EUR", "effective_at": iso(ahead)},
    )


# ---------------------------------------------------------------- the test clock


@pytest.fixture
def test_clock(
    database_url: str, settings: Settings
) -> Iterator[tuple[TestClient, Container, dict[str, str]]]:
    allowed = settings.model_copy(update={"allow_test_clock": True})
    container = bootstrap(allowed, database_url, run_projection=True)
    try:
        with TestClient(create_app(lambda: container), raise_server_exceptions=False) as client:
            _, raw = container.keys.mint(role="admin", name="tests")
            yield client, container, bearer(raw)
    finally:
        container.close()


def advance(client: TestClient, admin: dict[str, str], to: datetime) -> dict[str, Any]:
    response = client.post("/v1/ops/clock", json={"advance_to": iso(to)}, headers=admin)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_moving_the_test_clock_records_what_fell_due_at_the_moment_it_did(
    test_clock: tuple[TestClient, Container, dict[str, str]],
) -> None:
    client, container, admin = test_clock
    finance = Finance(client, admin)
    _, audit = container.keys.mint(role="audit", name="auditor")
    finance.auditor = bearer(audit)  # type: ignore[attr-defined]
    finance.plans(MONTHLY)
    customer = finance.customer("acme")
    start = NOW - timedelta(hours=1)
    trialing = finance.post(
        "/v1/subscriptions",
        {"customer_id": customer, "plan_code": "pro", "trial_days": 14, "effective_at": iso(start)},
    )["id"]
    leaving = finance.subscribe(customer, "pro", iso(start))
    finance.post(f"/v1/subscriptions/{leaving}/cancel", {"at_period_end": True}, 200)
    assert finance.get(f"/v1/subscriptions/{trialing}")["status"] == "trialing"

    moved = advance(client, admin, start + timedelta(days=50))
    finance.position = moved["position"]

    trial_end = start + timedelta(days=14)
    lifecycle = [e for e in audit_stream(finance, trialing) if not e[0].startswith("Subscription.Invoice")]
    assert lifecycle[1:] == [
        ("Subscription.TrialEnded", trial_end),
        ("Subscription.Renewed", a_month_after(trial_end)),
    ]
    sub = finance.get(f"/v1/subscriptions/{trialing}")
    assert sub["status"] == "active"
    assert (
        moment(sub["current_period_start"]) <= start + timedelta(days=50) < moment(sub["current_period_end"])
    )
    ended = finance.get(f"/v1/subscriptions/{leaving}")
    assert ended["status"] == "canceled"
    assert ended["ended_at"] == ended["cancel_at"]

    clock = client.get("/v1/ops/clock", headers=admin).json()
    assert moment(clock["now"]) == start + timedelta(days=50)
    assert clock["test_clock"] is True
    # Business time now follows the test clock: 40 days ahead of the wall clock is not the future.
    finance.post(
        "/v1/customers",
        {
            "external_id": "b",
            "email": "b@x.io",
            "currency": "EUR",
            "effective_at": iso(start + timedelta(days=49)),
        },
    )

    events = count_events(container)
    assert container.ledger.advance_due().advanced == 0
    assert count_events(container) == events


def test_the_test_clock_never_moves_back(test_clock: tuple[TestClient, Container, dict[str, str]]) -> None:
    client, container, admin = test_clock
    advance(client, admin, NOW + timedelta(days=3))
    events = count_events(container)
    response = client.post("/v1/ops/clock", json={"advance_to": iso(NOW + timedelta(days=2))}, headers=admin)
    assert response.status_code == 409
    assert count_events(container) == events


def test_the_test_clock_is_refused_where_it_is_not_allowed(
    client: TestClient, admin: dict[str, str], container: Container
) -> None:
    events = count_events(container)
    response = client.post("/v1/ops/clock", json={"advance_to": iso(NOW + timedelta(days=2))}, headers=admin)
    assert response.status_code == 403
    assert response.json()["type"].endswith("test_clock_disabled")
    assert count_events(container) == events
    assert client.get("/v1/ops/clock", headers=admin).json()["test_clock"] is False


def test_two_clocks_running_at_once_record_each_transition_once(
    test_clock: tuple[TestClient, Container, dict[str, str]], database_url: str, settings: Settings
) -> None:
    client, container, admin = test_clock
    finance = Finance(client, admin)
    finance.plans(MONTHLY)
    customers = [finance.customer(f"c{i}") for i in range(20)]
    for customer in customers:
        finance.subscribe(customer, "pro", iso(NOW - timedelta(hours=2)))
    # Move the clock without running it, then let two ledgers (two processes' worth) run it at once.
    ledger = container.ledger
    clock = TestClock.start(to=NOW + timedelta(days=95), now=ledger.now())
    ledger.save(clock)
    other = bootstrap(
        settings.model_copy(update={"allow_test_clock": True}), database_url, run_projection=False
    )
    try:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(2) as pool:
            runs = list(pool.map(lambda led: led.advance_due(), [ledger, other.ledger]))
    finally:
        other.close()
    assert sum(run.advanced for run in runs) >= 20
    with container.pool.connection() as conn:
        rows: Any = conn.execute(
            "SELECT originator_id, occurred_at, count(*) AS n FROM ledger_events"
            " WHERE event_type = 'Subscription.Renewed' GROUP BY 1, 2"
        ).fetchall()
    assert len(rows) == 20 * 3
    assert {r["n"] for r in rows} == {1}


def test_the_daily_clock_records_each_day_begun_once(
    test_clock: tuple[TestClient, Container, dict[str, str]],
) -> None:
    client, container, admin = test_clock
    today = container.ledger.now()
    advance(client, admin, today + timedelta(days=5))
    advance(client, admin, today + timedelta(days=5, hours=1))
    with container.pool.connection() as conn:
        days: Any = conn.execute(
            "SELECT payload->>'day' AS day FROM events WHERE type = 'ClockTick.Ticked' ORDER BY position"
        ).fetchall()
    recorded = [date.fromisoformat(r["day"]) for r in days]
    last = (today + timedelta(days=5, hours=1)).date()
    assert recorded == [today.date() + timedelta(days=d) for d in range((last - today.date()).days + 1)]


def test_the_clock_catches_up_a_subscription_whose_timer_fell_due_without_any_write(
    test_clock: tuple[TestClient, Container, dict[str, str]],
) -> None:
    _, container, _ = test_clock
    ledger = container.ledger
    ctx = c.CommandContext(occurred_at=NOW)
    ledger.define_plan(c.DefinePlan("pro", "Pro", "EUR", 2000, "month"), ctx)
    customer = ledger.register_customer(c.RegisterCustomer("acme", "a@acme.io", "EUR"), ctx)
    sub = ledger.start_subscription(c.StartSubscription(customer.resource_id, "pro", trial_days=3), ctx)
    assert sub.receipt["status"] == "trialing"
    ledger.save(TestClock.start(to=NOW + timedelta(days=4), now=ledger.now()))
    run = ledger.advance_due()
    assert run.advanced >= 1
    assert ledger.repository.get(sub.resource_id).status == "active"


def test_a_subscription_reads_its_monthly_contribution_only_while_it_contributes(audited: Finance) -> None:
    audited.plans(MONTHLY)
    customer = audited.customer("acme")
    trialing = audited.subscribe(customer, "pro", iso(NOW - timedelta(days=2)), trial_days=14)
    paying = audited.subscribe(customer, "pro", iso(NOW - timedelta(days=2)), quantity=3)
    ended = audited.subscribe(customer, "pro", iso(NOW - timedelta(days=2)))
    audited.post(f"/v1/subscriptions/{ended}/cancel", {"at_period_end": False}, 200)
    by_id = {s["id"]: s for s in audited.get("/v1/subscriptions", customer_id=customer)["data"]}
    assert [by_id[s]["mrr"] for s in (trialing, paying, ended)] == [0, 6000, 0]
    assert audited.get(f"/v1/subscriptions/{paying}")["mrr"] == 6000
