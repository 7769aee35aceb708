"""`Simulation` writes a deterministic, realistic history through the use cases: checked on the
stored events themselves (the `events` view), in fresh schemas of a real PostgreSQL."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from application.ledger import Ledger
from application.simulation import Simulation, SimulationStats
from infra.database import ensure_database, ensure_schema, event_store_env
from infra.settings import DatabaseAddress

UNTIL = datetime(2025, 6, 1, tzinfo=UTC)
# The payload fields compared between two runs (ids and recording times differ by nature).
COMPARED_FIELDS = (
    "amount", "quantity", "plan_code", "currency", "status", "total", "tax", "discount",
    "subtotal", "unit_amount", "due_date", "number", "period_start", "period_end", "trial_end",
    "attempt", "failure_code", "external_id", "email", "tax_rate_bps", "written_off", "ends_at",
)  # fmt: skip


@dataclass
class Store:
    ledger: Ledger
    schema: str
    address: DatabaseAddress

    def rows(self) -> list[dict[str, Any]]:
        query = sql.SQL(
            "SELECT position, stream_id, type, occurred_at, customer_id, source, actor, payload "
            "FROM {}.events ORDER BY position"
        ).format(sql.Identifier(self.schema))
        with psycopg.connect(self.address.conninfo(), row_factory=dict_row) as conn:
            return conn.execute(query).fetchall()


@pytest.fixture
def new_store(database_url: str) -> Iterator[Any]:
    """A factory of ledgers, each on a schema of its own, dropped afterwards."""
    address = DatabaseAddress(database_url)
    ensure_database(address)
    made: list[Store] = []

    def make() -> Store:
        schema = "sim_" + uuid.uuid4().hex[:8]
        ensure_schema(address, schema)
        store = Store(Ledger(env=event_store_env(address, schema, 2)), schema, address)
        made.append(store)
        return store

    yield make
    for store in made:
        store.ledger.close()
        with psycopg.connect(address.conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(store.schema)))


def fingerprint(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (
            row["type"],
            row["occurred_at"],
            tuple(row["payload"].get(name) for name in COMPARED_FIELDS),
            tuple(_line_terms(line) for line in row["payload"].get("lines") or []),
        )
        for row in rows
    ]


def _line_terms(line: dict[str, Any]) -> str:
    """A line without the ids derived from random aggregate ids (its own, its lineage's)."""
    return str({k: v for k, v in sorted(line.items()) if k not in ("line_id", "source")})


def test_same_seed_and_until_write_the_same_history(new_store: Any) -> None:
    first, second, other = new_store(), new_store(), new_store()
    done: list[int] = []
    stats_a = Simulation(first.ledger, customers=40, months=8, seed=11, until=UNTIL).run(
        lambda: done.append(1)
    )
    stats_b = Simulation(second.ledger, customers=40, months=8, seed=11, until=UNTIL).run()
    Simulation(other.ledger, customers=40, months=8, seed=12, until=UNTIL).run()

    assert len(done) == 40
    assert stats_a == stats_b
    rows_a, rows_b = first.rows(), second.rows()
    assert len(rows_a) > 500
    assert fingerprint(rows_a) == fingerprint(rows_b)
    assert fingerprint(other.rows()) != fingerprint(rows_a)


def test_a_second_run_skips_the_customers_already_simulated(new_store: Any) -> None:
    store = new_store()
    Simulation(store.ledger, customers=5, months=3, seed=3, until=UNTIL).run()
    before = len(store.rows())
    again = Simulation(store.ledger, customers=5, months=3, seed=3, until=UNTIL).run()
    assert again.customers_skipped == 5
    assert again.customers == 0
    assert len(store.rows()) == before  # plans already defined: nothing recorded


@pytest.fixture(scope="module")
def history(database_url: str) -> Iterator[tuple[SimulationStats, list[dict[str, Any]]]]:
    """150 customers over 12 months, seed 4: one history for the content checks below."""
    address = DatabaseAddress(database_url)
    schema = "sim_" + uuid.uuid4().hex[:8]
    ensure_schema(address, schema)
    ledger = Ledger(env=event_store_env(address, schema, 2))
    try:
        stats = Simulation(ledger, customers=150, months=12, seed=4, until=UNTIL).run()
        yield stats, Store(ledger, schema, address).rows()
    finally:
        ledger.close()
        with psycopg.connect(address.conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def streams(rows: list[dict[str, Any]], prefix: str) -> dict[Any, list[dict[str, Any]]]:
    found: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["type"].startswith(prefix + "."):
            found[row["stream_id"]].append(row)
    return found


def kinds(stream: list[dict[str, Any]]) -> list[str]:
    return [row["type"].split(".", 1)[1] for row in stream]


def moment(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_history_is_chronological_per_customer_and_never_after_until(history: Any) -> None:
    _, rows = history
    start = UNTIL - timedelta(days=366)
    last_seen: dict[Any, datetime] = {}
    for row in rows:
        assert start <= row["occurred_at"] <= UNTIL, row
        assert (row["source"], row["actor"]) == ("system", "simulate")
        customer = row["customer_id"]
        if customer is not None:
            assert row["occurred_at"] >= last_seen.get(customer, row["occurred_at"]), row
            last_seen[customer] = row["occurred_at"]


def test_stats_count_what_was_recorded(history: Any) -> None:
    stats, rows = history
    types = Counter(row["type"] for row in rows)
    assert stats.customers == types["Customer.Registered"] == 150
    assert stats.subscriptions == types["Subscription.Started"]
    assert stats.trials_converted == types["Subscription.TrialEnded"]
    # The ledger drafts each period's invoice, and a final invoice for the credit of a cancellation.
    drafted = [r for r in rows if r["type"] == "Invoice.Drafted"]
    final = [r for r in drafted if r["payload"]["billing_reason"] == "subscription_cancel"]
    assert stats.invoices == len(drafted) - len(final)
    assert stats.invoices_never_paid == types["Invoice.MarkedUncollectible"]
    assert stats.invoices_paid_on_time + stats.invoices_paid_late == types["Invoice.Paid"]
    assert stats.failed_payments == types["Payment.Failed"]
    assert stats.retries == types["Payment.Retried"]
    assert stats.refunds == types["Payment.Refunded"]
    assert stats.cancellations_withdrawn == types["Subscription.CancellationWithdrawn"]
    changes = stats.upgrades + stats.downgrades + stats.quantity_changes + stats.interval_switches
    assert changes == types["Subscription.Changed"]
    assert "customers" in stats.summary()


def test_history_holds_every_kind_of_event(history: Any) -> None:
    stats, rows = history
    types = Counter(row["type"] for row in rows)
    for kind in (
        "Plan.Defined", "Customer.Registered", "Subscription.Started", "Subscription.TrialEnded",
        "Subscription.Changed", "Subscription.Renewed", "Subscription.PastDue",
        "Subscription.Recovered", "Subscription.CancellationScheduled", "Subscription.Canceled",
        "Invoice.Drafted", "Invoice.Finalized", "Invoice.PaymentApplied",
        "Invoice.Paid", "Invoice.MarkedUncollectible", "Payment.Initiated", "Payment.Succeeded",
        "Payment.Failed", "Payment.Retried", "Payment.Refunded",
    ):  # fmt: skip
        assert types[kind] > 0, kind
    for name, value in stats.as_dict().items():
        if name not in ("customers_skipped", "cancellations_withdrawn"):
            assert value > 0, name

    # Several currencies, JPY with amounts in whole yen.
    currencies = Counter(r["payload"]["currency"] for r in rows if r["type"] == "Customer.Registered")
    assert set(currencies) == {"EUR", "USD", "GBP", "JPY"}
    jpy_plans = {
        r["payload"]["code"]: r["payload"]["amount"]
        for r in rows
        if r["type"] == "Plan.Defined" and r["payload"]["currency"] == "JPY"
    }
    assert jpy_plans["starter-monthly-jpy"] == 3000
    assert {p["interval"] for p in (r["payload"] for r in rows if r["type"] == "Plan.Defined")} == {
        "month",
        "year",
    }


def test_subscription_stories(history: Any) -> None:
    _, rows = history
    subs = streams(rows, "Subscription")
    converted = abandoned = upgrades = downgrades = quantity_changes = 0
    at_period_end = immediate = 0
    for stream in subs.values():
        story = kinds(stream)
        started = stream[0]["payload"]
        if started["trial_end"] is not None:
            converted += "TrialEnded" in story
            abandoned += "Canceled" in story and "TrialEnded" not in story
        for row in stream:
            if row["type"] == "Subscription.Renewed":  # renewals occur at the period end
                assert moment(row["payload"]["period_start"]) == row["occurred_at"]
        amount, quantity, plan = started["amount"], started["quantity"], started["plan_code"]
        for row in stream:
            if row["type"] != "Subscription.Changed":
                continue
            p = row["payload"]
            if p["plan_code"] != plan and p["interval"] == started["interval"]:
                upgrades += p["amount"] > amount
                downgrades += p["amount"] < amount
            if p["plan_code"] == plan and p["quantity"] != quantity:
                quantity_changes += 1
            amount, quantity, plan = p["amount"], p["quantity"], p["plan_code"]
        paying = "TrialEnded" in story or started["trial_end"] is None
        if paying and "Canceled" in story:
            canceled = stream[story.index("Canceled")]
            if "CancellationScheduled" in story:
                scheduled = stream[story.index("CancellationScheduled")]
                assert canceled["occurred_at"] == moment(scheduled["payload"]["ends_at"])
                at_period_end += 1
            else:
                immediate += 1
    assert converted > 0 and abandoned > 0
    assert 0.1 < abandoned / (converted + abandoned) < 0.35
    assert upgrades > 0 and downgrades > 0 and quantity_changes > 0
    assert at_period_end > 0 and immediate > 0

    # Reactivation: a customer starts a new subscription after the previous one was canceled.
    by_customer: dict[Any, list[list[dict[str, Any]]]] = defaultdict(list)
    for stream in subs.values():
        by_customer[stream[0]["customer_id"]].append(stream)
    reactivated = 0
    for customer_streams in by_customer.values():
        customer_streams.sort(key=lambda s: s[0]["occurred_at"])
        for earlier, later in pairwise(customer_streams):
            ended = [r for r in earlier if r["type"] == "Subscription.Canceled"]
            assert ended and ended[0]["occurred_at"] < later[0]["occurred_at"]
            reactivated += 1
    assert reactivated > 0


def test_invoice_and_payment_stories(history: Any) -> None:
    _, rows = history
    invoices = streams(rows, "Invoice")
    payments = streams(rows, "Payment")
    subs = streams(rows, "Subscription")
    sub_of_invoice = {}
    for invoice_id, stream in invoices.items():
        drafted = stream[0]["payload"]
        assert drafted["subscription_id"] is not None
        sub_of_invoice[invoice_id] = uuid.UUID(drafted["subscription_id"])
        if drafted["billing_reason"] == "subscription_cancel":
            assert all(line["kind"] == "proration" and line["amount"] < 0 for line in drafted["lines"])
            continue
        fee = drafted["lines"][0]  # the period's fee, billed in advance by the ledger
        assert fee["kind"] == "fee" and Decimal(fee["quantity"]) >= 1 and Decimal(fee["unit_amount"]) > 0
        assert fee["period_start"] == drafted["period_start"]
        finalized = [r for r in stream if r["type"] == "Invoice.Finalized"]
        if finalized:
            # Finalized when the grace period (an hour) ends, due after the customer's 14 days.
            assert finalized[0]["occurred_at"] == moment(drafted["period_start"]) + timedelta(hours=1)
            due = date.fromisoformat(finalized[0]["payload"]["due_date"])
            assert due == (finalized[0]["occurred_at"] + timedelta(days=14)).date()

    # Failed, retried, then succeeded: the subscription went past_due and recovered.
    recovered = 0
    for stream in payments.values():
        story = kinds(stream)
        if story[:3] == ["Initiated", "Failed", "Retried"] and story[-1] in ("Succeeded", "Refunded"):
            recovered += 1
    assert recovered > 0
    past_due = {r["stream_id"] for r in rows if r["type"] == "Subscription.PastDue"}
    back = {r["stream_id"] for r in rows if r["type"] == "Subscription.Recovered"}
    assert back and back <= past_due

    # Never paid: written off, and its subscription canceled at that moment.
    written_off = [r for r in rows if r["type"] == "Invoice.MarkedUncollectible"]
    assert written_off
    for row in written_off:
        sub_stream = subs[sub_of_invoice[row["stream_id"]]]
        canceled = [r["occurred_at"] for r in sub_stream if r["type"] == "Subscription.Canceled"]
        assert canceled and canceled[0] <= row["occurred_at"]

    # Partial refunds never exceed the payment.
    for stream in payments.values():
        refunded = [r["payload"]["amount_refunded"] for r in stream if r["type"] == "Payment.Refunded"]
        if refunded:
            assert refunded[-1] <= stream[0]["payload"]["amount"]
