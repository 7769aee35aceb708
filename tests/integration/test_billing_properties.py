"""Random billing histories under the test clock (usage on time and late, changes with each
proration behavior, add-on items bought, changed and removed, coupons, payments, credit notes,
cancellations): whatever happens,

- every invoice satisfies total = subtotal − discount + tax and
  amount_remaining = total − paid − credited − balance applied;
- each subscription period is billed once, and running the clock again records nothing;
- the trial balance balances on every day and the receivable account equals what remains on
  open invoices;
- rebuilding every read model from the log gives the rows of live projection."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from application import commands as c
from application.ingestion import CorrectUsage, EventKey, IngestContext, RecordUsage
from domain.errors import DomainError
from domain.invoice import Invoice
from infra.bootstrap import CORE_PROJECTION, Container, bootstrap
from infra.settings import Settings
from projections.replay import replay
from projections.runner import head_position, wait_for_position
from projections.trial_balance import trial_balance
from tests.conftest import read_model_rows

PRICES = {
    "calls": {
        "model": "graduated",
        "tiers": [
            {"up_to": 1000, "unit_amount": "0.5"},
            {"up_to": 10000, "unit_amount": "0.2"},
            {"up_to": None, "unit_amount": "0.1"},
        ],
    }
}
PLANS = (
    c.DefinePlan("basic", "Basic", "EUR", 2000, "month", trial_days=0, usage_prices=PRICES),
    c.DefinePlan("plus", "Plus", "EUR", 5000, "month", usage_prices=PRICES),
    c.DefinePlan("annual", "Annual", "EUR", 20000, "year", usage_prices=PRICES),
    c.DefinePlan("storage", "Extra storage", "EUR", 700, "month"),
    c.DefinePlan("storage-yearly", "Extra storage (yearly)", "EUR", 7000, "year"),
)

operation = st.tuples(
    st.sampled_from(
        [
            "usage",
            "late_usage",
            "quantity",
            "plan",
            "pay",
            "credit_note",
            "cancel_now",
            "coupon",
            "correct",
            "add_item",
            "item_quantity",
            "remove_item",
        ]
    ),
    st.integers(1, 24 * 40),  # hours later
    st.integers(1, 3000),  # a value
    st.sampled_from(["create_prorations", "always_invoice", "none"]),
)


@pytest.fixture
def fresh(database_url: str, settings: Settings) -> Iterator[Any]:
    made: list[Container] = []

    def make() -> Container:
        # One example at a time holds connections: the previous example's pools are closed
        # first, so the number of examples is not bounded by the server's max_connections.
        while made:
            made.pop().close()
        schema = f"t_{uuid.uuid4().hex[:12]}"
        update = {"database_schema": schema, "allow_test_clock": True}
        container = bootstrap(settings.model_copy(update=update), database_url)
        made.append(container)
        return container

    yield make
    for container in made:
        container.close()


class History:
    def __init__(self, container: Container, trial_days: int) -> None:
        self.container, self.ledger = container, container.ledger
        self.now = self.ledger.now().replace(microsecond=0) + timedelta(hours=1)
        self.move(self.now)
        ctx = self.ctx()
        for plan in PLANS:
            self.ledger.define_plan(plan, ctx)
        self.ledger.define_coupon(
            c.DefineCoupon("HALF", "repeating", percent_off="50", duration_in_periods=2), ctx
        )
        self.customer = self.ledger.register_customer(
            c.RegisterCustomer("acme", "a@acme.io", "EUR", tax_rate_bps=2000), ctx
        ).resource_id
        self.sub = self.ledger.start_subscription(
            c.StartSubscription(self.customer, "basic", trial_days=trial_days), ctx
        ).resource_id
        self.records: list[str] = []
        self.items: list[Any] = []

    def ctx(self) -> c.CommandContext:
        return c.CommandContext(occurred_at=self.now)

    def move(self, to: datetime) -> None:
        self.now = to
        self.ledger.advance_test_clock(to, c.CommandContext(occurred_at=to))

    def usage(self, event_id: str, value: int, at: datetime, corrects: str | None = None) -> None:
        assert self.container.ingestion is not None
        key = EventKey.of(0, "app", event_id, "")
        if corrects is not None:
            item: Any = CorrectUsage(key, self.customer, corrects, value, at)
        else:
            item = RecordUsage(key, self.customer, None, "calls", value, {}, at)
        self.container.ingestion.ingest([item], IngestContext(actor=None, correlation_id=None))

    def open_invoices(self) -> list[Invoice]:
        found = [self.ledger.repository.get(i) for i in self.invoice_ids()]
        return [i for i in found if i.status == "open"]

    def invoice_ids(self) -> list[Any]:
        with self.container.pool.connection() as conn:
            rows: Any = conn.execute(
                "SELECT originator_id FROM ledger_events WHERE event_type = 'Invoice.Drafted'"
            ).fetchall()
        return [r["originator_id"] for r in rows]

    def run(self, op: str, hours: int, value: int, behavior: str) -> None:
        self.move(self.now + timedelta(hours=hours))
        ledger, ctx = self.ledger, self.ctx()
        if op == "usage":
            event_id = f"u{len(self.records)}"
            self.records.append(event_id)
            self.usage(event_id, value, self.now - timedelta(minutes=1))
        elif op == "late_usage":
            event_id = f"u{len(self.records)}"
            self.records.append(event_id)
            self.usage(event_id, value, self.now - timedelta(days=value % 90))
        elif op == "correct" and self.records:
            self.usage(
                f"fix{value}-{len(self.records)}",
                value // 2,
                self.now,
                self.records[value % len(self.records)],
            )
        elif op == "quantity":
            cmd = c.ChangeSubscription(self.sub, quantity=value % 4 + 1, proration_behavior=behavior)
            ledger.change_subscription(cmd, ctx)
        elif op == "plan":
            code = ("basic", "plus", "annual")[value % 3]
            ledger.change_subscription(
                c.ChangeSubscription(self.sub, plan_code=code, proration_behavior=behavior), ctx
            )
        elif op == "pay":
            for invoice in self.open_invoices()[:1]:
                amount = invoice.amount_remaining if value % 3 else max(1, invoice.amount_remaining // 2)
                paid = ledger.initiate_payment(
                    c.InitiatePayment(self.customer, amount, "EUR", invoice.id), ctx
                )
                ledger.succeed_payment(c.SucceedPayment(paid.resource_id), ctx)
        elif op == "credit_note":
            for invoice_id in self.invoice_ids()[value % 3 :][:1]:
                invoice = ledger.repository.get(invoice_id)
                room = max(invoice.total, 0) - invoice.amount_credited
                if invoice.status in ("open", "paid") and room > 0:
                    cmd = c.IssueCreditNote(invoice.id, "other", amount=max(1, room * (value % 100) // 100))
                    ledger.issue_credit_note(cmd, ctx)
        elif op == "cancel_now":
            ledger.cancel_subscription(
                c.CancelSubscription(self.sub, False, proration_behavior=behavior), ctx
            )
        elif op == "coupon":
            ledger.apply_discount(c.ApplyDiscount("HALF", subscription_id=self.sub), ctx)
        elif op == "add_item":
            yearly = ledger.repository.get(self.sub).interval == "year"
            cmd_add = c.AddSubscriptionItem(
                self.sub, "storage-yearly" if yearly else "storage", value % 3 + 1, behavior
            )
            self.items.append(uuid.UUID(ledger.add_subscription_item(cmd_add, ctx).receipt["id"]))
        elif op == "item_quantity" and self.items:
            cmd_change = c.ChangeSubscriptionItem(self.sub, self.items[-1], value % 4 + 1, behavior)
            ledger.change_subscription_item(cmd_change, ctx)
        elif op == "remove_item" and self.items:
            ledger.remove_subscription_item(c.RemoveSubscriptionItem(self.sub, self.items[-1], behavior), ctx)
            self.items.pop()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(operation, min_size=1, max_size=12), st.sampled_from([0, 14]))
@example(
    [
        ("add_item", 24 * 10, 1, "create_prorations"),
        ("item_quantity", 24 * 5, 2, "always_invoice"),
        ("plan", 24 * 3, 1, "create_prorations"),
        ("remove_item", 24 * 20, 0, "create_prorations"),
        ("add_item", 24, 2, "none"),
        ("cancel_now", 24 * 3, 1, "create_prorations"),
    ],
    0,
)
def test_every_billing_history_keeps_its_invoices_books_and_replay_right(
    fresh: Any, operations: list[tuple[str, int, int, str]], trial_days: int
) -> None:
    container: Container = fresh()
    history = History(container, trial_days)
    for op in operations:
        try:
            history.run(*op)
        except DomainError:
            continue  # refused (a canceled subscription, nothing left to credit): nothing recorded
    history.move(history.now + timedelta(days=40))  # every draft finalized

    ledger = container.ledger
    for invoice_id in history.invoice_ids():
        invoice: Invoice = ledger.repository.get(invoice_id)
        assert invoice.total == invoice.subtotal - invoice.discount + invoice.tax
        if invoice.status in ("open", "paid"):
            assert invoice.amount_remaining == (
                max(invoice.total, 0)
                - invoice.amount_paid
                - invoice.credited_against_remaining
                - invoice.balance_applied
            ), invoice_id
    assert ledger.advance_due().advanced == 0

    container.wake_projection()
    assert wait_for_position(container.pool, CORE_PROJECTION, head_position(container.pool), 30)
    with container.pool.connection() as conn:
        billed_twice: Any = conn.execute(
            "SELECT subscription_id, period_start, billing_reason FROM rm_invoices"
            " WHERE billing_reason = 'subscription_cycle' GROUP BY 1, 2, 3 HAVING count(*) > 1"
        ).fetchall()
        assert billed_twice == []
        day = history.now.date() - timedelta(days=400)
        while day <= history.now.date():
            balances = trial_balance(conn, as_of=day, currency=None)
            assert all(t["debit"] == t["credit"] for t in balances["totals"]), day
            day += timedelta(days=5)
        receivable = sum(
            a["balance"]
            for a in trial_balance(conn, as_of=history.now.date(), currency=None)["accounts"]
            if a["account"] == "accounts_receivable"
        )
        row: Any = conn.execute(
            "SELECT coalesce(sum(amount_remaining), 0)::bigint AS open FROM rm_invoices WHERE status = 'open'"
        ).fetchone()
        assert receivable == row["open"]

    live = read_model_rows(container)
    replay(container.address.conninfo(), container.settings.database_schema, CORE_PROJECTION, workers=1)
    assert read_model_rows(container) == live
