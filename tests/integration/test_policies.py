"""Policies follow the log and issue commands: alerts for failed payments, quotas, cancellations
and overdue invoices, and the daily clock's trials, cancellations and renewals. Handling the
same events again changes nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from application import commands as c
from application.ingestion import EventKey, IngestContext, RecordUsage
from domain.periods import add_months
from infra.bootstrap import CORE_PROJECTION, Container
from infra.settings import Settings
from projections.policies import Policies, record_today
from projections.runner import head_position, wait_for_position
from tests.conftest import count_events

START = datetime(2025, 3, 10, 9, tzinfo=UTC)


def ctx(at: datetime) -> c.CommandContext:
    return c.CommandContext(occurred_at=at)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """These histories leave invoices unpaid for months, which dunning's final action would end
    the subscriptions for (tests/integration/test_collections.py covers that)."""
    return settings.model_copy(update={"dunning_final_action": "none"})


@pytest.fixture
def policies(container: Container) -> Policies:
    return Policies(container.pool, container.ledger, CORE_PROJECTION)


def settle(container: Container, policies: Policies) -> None:
    """Let the read models and then the policies catch up with everything written so far."""
    for _ in range(3):  # policies write alerts, which the read models then apply
        container.wake_projection()
        assert wait_for_position(container.pool, CORE_PROJECTION, head_position(container.pool), 30)
        policies.catch_up()
    container.wake_projection()
    assert wait_for_position(container.pool, CORE_PROJECTION, head_position(container.pool), 30)


def alerts(container: Container) -> list[dict[str, Any]]:
    with container.pool.connection() as conn:
        rows: Any = conn.execute("SELECT * FROM rm_alerts ORDER BY raised_at, subject").fetchall()
        return list(rows)


def handle_everything_again(container: Container, policies: Policies) -> None:
    with container.pool.connection() as conn:
        conn.execute("UPDATE projection_partitions SET position = 0, watermark = 0 WHERE name = 'policies'")
    settle(container, policies)


def customer_with_plan(container: Container, plan: c.DefinePlan, trial_days: int = 0) -> tuple[Any, Any]:
    ledger = container.ledger
    ledger.define_plan(plan, ctx(START))
    customer = ledger.register_customer(c.RegisterCustomer("acme", "a@acme.test", "EUR"), ctx(START))
    # Billed elsewhere: these tests follow the hand-made invoices they draft, not the ledger's own.
    sub = ledger.start_subscription(
        c.StartSubscription(customer.resource_id, plan.code, trial_days=trial_days, billed_by="external"),
        ctx(START),
    )
    return customer.resource_id, sub.resource_id


def open_invoice(container: Container, customer: Any, due: date) -> Any:
    ledger = container.ledger
    drafted = ledger.draft_invoice(
        c.DraftInvoice(customer, "EUR", [c.InvoiceLine("service", 1, 5000)]), ctx(START)
    )
    ledger.finalize_invoice(c.FinalizeInvoice(drafted.resource_id, due), ctx(START))
    return drafted.resource_id


def test_a_failed_payment_raises_one_critical_alert_and_its_success_resolves_it(
    container: Container, policies: Policies
) -> None:
    customer, _ = customer_with_plan(container, c.DefinePlan("pro", "Pro", "EUR", 5000, "month"))
    invoice = open_invoice(container, customer, date(2025, 3, 24))
    ledger = container.ledger
    payment = ledger.initiate_payment(c.InitiatePayment(customer, 5000, "EUR", invoice), ctx(START))
    ledger.fail_payment(c.FailPayment(payment.resource_id, "card_declined"), ctx(START + timedelta(hours=1)))
    settle(container, policies)

    alert, at_risk = sorted(alerts(container), key=lambda a: a["type"] != "payment_failed")
    assert (alert["type"], alert["severity"], alert["status"]) == ("payment_failed", "critical", "open")
    assert alert["subject"] == f"invoice:{invoice}"
    assert (at_risk["type"], at_risk["severity"], at_risk["subject"]) == (
        "customer_at_risk",
        "high",
        f"customer:{customer}",
    )
    events = count_events(container)
    handle_everything_again(container, policies)
    assert count_events(container) == events

    retry = ledger.retry_payment(c.RetryPayment(payment.resource_id), ctx(START + timedelta(days=3)))
    ledger.succeed_payment(c.SucceedPayment(retry.resource_id), ctx(START + timedelta(days=3)))
    settle(container, policies)
    assert {a["type"]: a["status"] for a in alerts(container)} == {
        "payment_failed": "resolved",
        "customer_at_risk": "resolved",
    }
    events = count_events(container)
    handle_everything_again(container, policies)
    assert count_events(container) == events
    assert {a["status"] for a in alerts(container)} == {"resolved"}


def record_usage(container: Container, customer: Any, event_id: str, value: int, at: datetime) -> None:
    assert container.ingestion is not None
    usage = RecordUsage(EventKey.of(0, "app", event_id, ""), customer, None, "calls", value, {}, at)
    [result] = container.ingestion.ingest([usage], IngestContext(actor=None, correlation_id=None))
    assert result.status == "accepted", result


def test_crossing_80_percent_twice_in_a_period_raises_one_alert_then_95_and_100_once_each(
    container: Container, policies: Policies
) -> None:
    plan = c.DefinePlan(
        "metered", "Metered", "EUR", 1000, "month", quotas={"calls": {"limit": 100, "aggregation": "sum"}}
    )
    customer, _ = customer_with_plan(container, plan)
    record_usage(container, customer, "u1", 85, START + timedelta(days=1))
    settle(container, policies)
    record_usage(container, customer, "u2", 5, START + timedelta(days=2))  # 90%: 80% again
    settle(container, policies)
    assert [(a["severity"], a["subject"].split(":")[1]) for a in alerts(container)] == [("medium", "80%")]

    record_usage(container, customer, "u3", 6, START + timedelta(days=3))  # 96%
    record_usage(container, customer, "u4", 10, START + timedelta(days=4))  # 106%
    settle(container, policies)
    assert sorted(a["subject"].split(":")[1] for a in alerts(container)) == ["100%", "80%", "95%"]
    assert {a["severity"] for a in alerts(container)} == {"medium", "high", "critical"}
    # The next period starts from zero: its own alerts.
    record_usage(container, customer, "u5", 81, START + timedelta(days=35))
    settle(container, policies)
    assert len(alerts(container)) == 4


def test_the_daily_tick_flags_overdue_invoices_while_backdated_subscriptions_are_already_caught_up(
    container: Container, policies: Policies
) -> None:
    customer, trial = customer_with_plan(
        container, c.DefinePlan("pro", "Pro", "EUR", 5000, "month"), trial_days=14
    )
    ledger = container.ledger
    monthly = ledger.start_subscription(c.StartSubscription(customer, "pro", trial_days=0), ctx(START))
    leaving = ledger.start_subscription(c.StartSubscription(customer, "pro", trial_days=0), ctx(START))
    ledger.cancel_subscription(
        c.CancelSubscription(leaving.resource_id, True), ctx(START + timedelta(days=2))
    )
    invoice = open_invoice(container, customer, date(2025, 3, 20))

    first = record_today(ledger, date(2025, 4, 11))
    again = record_today(ledger, date(2025, 4, 11))
    assert (first.created, again.created, again.position) == (True, False, first.position)
    settle(container, policies)

    with container.pool.connection() as conn:
        subs: Any = {
            r["id"]: r
            for r in conn.execute("SELECT id, status, current_period_start FROM rm_subscriptions").fetchall()
        }
    # Nothing waited for a tick: each write caught its subscription up to now.
    assert subs[trial]["status"] == "active"
    assert subs[leaving.resource_id]["status"] == "canceled"
    now = container.ledger.now()
    this_month = now.replace(day=10, hour=9, minute=0, second=0, microsecond=0)
    expected_start = this_month if now >= this_month else add_months(this_month, -1)
    assert subs[monthly.resource_id]["current_period_start"] == expected_start
    kinds = {(a["type"], a["subject"]) for a in alerts(container)}
    assert ("invoice_overdue", f"invoice:{invoice}") in kinds
    assert ("subscription_canceled", f"subscription:{leaving.resource_id}") in kinds

    events = count_events(container)
    handle_everything_again(container, policies)
    assert count_events(container) == events
