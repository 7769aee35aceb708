"""Replay equals live for the metrics: random histories (backdated commands in any order,
trials, changes, add-on items bought, changed and removed, cancellations, invoices, payments,
voids and usage with corrections) give the same rows whether projected live batch by batch or
rebuilt from the log."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from application import commands as c
from application.ingestion import EventKey, IngestContext, RecordUsage
from domain.errors import DomainError
from infra.bootstrap import CORE_PROJECTION, Container
from projections.metric_queries import churn
from projections.mrr import days_whose_totals_differ
from projections.replay import replay
from projections.runner import head_position, wait_for_position
from tests.conftest import read_model_rows

BASE = datetime(2025, 1, 1, tzinfo=UTC)
PLANS = (
    c.DefinePlan("m", "Monthly", "EUR", 2000, "month", trial_days=0),
    c.DefinePlan("y", "Yearly", "EUR", 200000, "year"),
    c.DefinePlan(
        "q",
        "Metered",
        "EUR",
        1000,
        "month",
        quotas={"calls": {"limit": 50, "aggregation": "sum", "enforcement": "hard"}},
    ),
    # Add-ons, one per billing interval (an item shares its subscription's).
    c.DefinePlan("addon-m", "Add-on monthly", "EUR", 700, "month"),
    c.DefinePlan("addon-y", "Add-on yearly", "EUR", 7001, "year"),
)

operations = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "subscribe",
                "trial",
                "change",
                "cancel_now",
                "cancel_end",
                "withdraw",
                "invoice",
                "usage",
                "add_item",
                "item_quantity",
                "remove_item",
            ]
        ),
        st.integers(0, 2),  # which customer
        st.integers(0, 150),  # day offset (any order: backdated writes)
        st.integers(1, 5),  # quantity / amount factor
    ),
    min_size=3,
    max_size=25,
)


def _ctx(day: int) -> c.CommandContext:
    return c.CommandContext(occurred_at=BASE + timedelta(days=day, hours=7))


def _play(container: Container, ops: list[tuple[str, int, int, int]]) -> int:
    ledger = container.ledger
    for plan in PLANS:
        ledger.define_plan(plan, _ctx(0))
    tag = uuid.uuid4().hex[:8]
    customers = [
        ledger.register_customer(c.RegisterCustomer(f"{tag}-{i}", f"{i}@x.test", "EUR"), _ctx(0)).resource_id
        for i in range(3)
    ]
    subscriptions: dict[int, Any] = {}
    items: dict[int, list[Any]] = {}
    position = 0
    for index, (op, who, day, factor) in enumerate(ops):
        customer = customers[who]
        sub = subscriptions.get(who)
        try:
            if op in ("subscribe", "trial"):
                plan = "yq"[factor % 2] if op == "subscribe" else "m"
                cmd = c.StartSubscription(customer, plan, factor, trial_days=10 if op == "trial" else 0)
                out = ledger.start_subscription(cmd, _ctx(day))
                subscriptions[who] = out.resource_id
                items[who] = []
            elif op == "change" and sub:
                out = ledger.change_subscription(c.ChangeSubscription(sub, quantity=factor), _ctx(day))
            elif op in ("cancel_now", "cancel_end") and sub:
                out = ledger.cancel_subscription(c.CancelSubscription(sub, op == "cancel_end"), _ctx(day))
            elif op == "add_item" and sub:
                addon = "addon-m" if ledger.repository.get(sub).months_per_period == 1 else "addon-y"
                cmd_add = c.AddSubscriptionItem(sub, addon, factor)
                out = ledger.add_subscription_item(cmd_add, _ctx(day))
                items.setdefault(who, []).append(uuid.UUID(out.receipt["id"]))
            elif op == "item_quantity" and items.get(who):
                cmd_change = c.ChangeSubscriptionItem(sub, items[who][-1], factor)
                out = ledger.change_subscription_item(cmd_change, _ctx(day))
            elif op == "remove_item" and items.get(who):
                out = ledger.remove_subscription_item(
                    c.RemoveSubscriptionItem(sub, items[who][-1]), _ctx(day)
                )
                items[who].pop()
            elif op == "withdraw" and sub:
                out = ledger.withdraw_cancellation(sub, _ctx(day))
            elif op == "invoice":
                line = c.InvoiceLine("service", 1, 1000 * factor)
                drafted = ledger.draft_invoice(c.DraftInvoice(customer, "EUR", [line]), _ctx(day))
                inv = drafted.resource_id
                out = ledger.finalize_invoice(
                    c.FinalizeInvoice(inv, date(2025, 1, 1) + timedelta(days=day + 14)), _ctx(day)
                )
                if factor > 1:
                    paid = ledger.initiate_payment(
                        c.InitiatePayment(customer, 500 * factor, "EUR", inv), _ctx(day + factor)
                    )
                    out = ledger.succeed_payment(c.SucceedPayment(paid.resource_id), _ctx(day + factor))
                if factor == 5:
                    out = ledger.void_invoice(c.VoidInvoice(inv), _ctx(day + 20))
            elif op == "usage":
                key = EventKey.of(0, "tests", f"{tag}-{index}", "")
                usage = RecordUsage(key, customer, None, "calls", factor * 7, {}, BASE + timedelta(days=day))
                assert container.ingestion is not None
                [result] = container.ingestion.ingest([usage], IngestContext(actor=None, correlation_id=None))
                position = max(position, result.position or 0)
                continue
            else:
                continue
            position = max(position, out.position)
        except DomainError:
            continue  # the ledger refused it (e.g. canceled already): nothing recorded
    return position


def _customers_by_definition(conn: Any, start: date, last: date) -> tuple[int, int]:
    """Customers paying at the end of `start` (their last movement by then leaves MRR above
    zero), and those of them paying nothing at the end of `last`: straight from each customer's
    movements."""
    row = conn.execute(
        "WITH s AS (SELECT DISTINCT ON (customer_id) customer_id, mrr_after FROM rm_mrr_movements"
        "  WHERE currency = 'EUR' AND day <= %(start)s ORDER BY customer_id, day DESC),"
        " e AS (SELECT DISTINCT ON (customer_id) customer_id, mrr_after FROM rm_mrr_movements"
        "  WHERE currency = 'EUR' AND day <= %(last)s ORDER BY customer_id, day DESC)"
        " SELECT count(*) FILTER (WHERE s.mrr_after > 0) AS paying,"
        " count(*) FILTER (WHERE s.mrr_after > 0 AND e.mrr_after = 0) AS churned"
        " FROM s JOIN e USING (customer_id)",
        {"start": start, "last": last},
    ).fetchone()
    return int(row["paying"]), int(row["churned"])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations)
@example(
    [
        ("subscribe", 0, 0, 1),
        ("add_item", 0, 5, 2),
        ("subscribe", 1, 0, 2),
        ("add_item", 1, 3, 1),
        ("item_quantity", 0, 10, 3),
        ("remove_item", 0, 20, 1),
        ("add_item", 0, 25, 1),
        ("cancel_now", 1, 40, 1),
    ]
)
def test_rebuilding_the_metrics_from_the_log_gives_the_rows_of_live_projection(
    container: Container, ops: list[tuple[str, int, int, int]]
) -> None:
    _play(container, ops)
    position = head_position(container.pool)
    container.wake_projection()
    assert wait_for_position(container.pool, CORE_PROJECTION, position, 30)
    live = read_model_rows(container)
    with container.pool.connection() as conn:
        # The daily totals are exactly the sum of the customers' movements.
        assert days_whose_totals_differ(conn) == []
        # The churn counts read from the daily totals are those of SPEC 4's definition.
        for first in (BASE.date() + timedelta(days=d) for d in range(-1, 190, 17)):
            window = churn(conn, "EUR", first, first + timedelta(days=30))
            assert (window["customers_at_start"], window["churned_customers"]) == _customers_by_definition(
                conn, first - timedelta(days=1), first + timedelta(days=29)
            ), first
    replay(container.address.conninfo(), container.settings.database_schema, CORE_PROJECTION, workers=2)
    rebuilt = read_model_rows(container)
    for table, rows in live.items():
        only_live = [r for r in rows if r not in rebuilt[table]]
        only_rebuilt = [r for r in rebuilt[table] if r not in rows]
        assert (table, only_live) == (table, only_rebuilt)
