"""Properties of the journal over random histories of invoices, payments, refunds, voids and
write-offs, written through the ledger's own use cases into real PostgreSQL: every trial
balance balances per currency, and the receivable account equals the receivables read model's
unpaid total on every day of the history, and what remains on open invoices now."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application import commands as c
from application.outcome import Outcome
from domain.errors import DomainError
from infra.bootstrap import CORE_PROJECTION, Container
from projections.metric_queries import unpaid_total
from projections.runner import wait_for_position
from projections.trial_balance import trial_balance

CUSTOMERS = (("EUR", 2000), ("JPY", 1000), ("USD", 0))  # currency, tax rate (basis points)

operation = st.one_of(
    st.tuples(st.just("invoice"), st.integers(0, 2), st.integers(1, 50_000), st.integers(0, 5_000)),
    st.tuples(st.just("draft"), st.integers(0, 2), st.integers(1, 50_000), st.just(0)),
    st.tuples(st.just("pay"), st.integers(0, 99), st.integers(1, 100), st.booleans()),
    st.tuples(st.just("prepay"), st.integers(0, 2), st.integers(1, 20_000), st.booleans()),
    st.tuples(st.just("refund"), st.integers(0, 99), st.integers(1, 100), st.just(False)),
    st.tuples(st.just("void"), st.integers(0, 99), st.just(0), st.just(0)),
    st.tuples(st.just("write_off"), st.integers(0, 99), st.just(0), st.just(0)),
)


class History:
    """Applies random operations; refusals of the domain (paying a void invoice, refunding
    more than was paid...) are part of random histories and simply change nothing."""

    def __init__(self, container: Container, start: datetime) -> None:
        self.ledger = container.ledger
        self.at = start
        self.days: set[date] = set()
        suffix = uuid.uuid4().hex[:8]
        self.customers: list[tuple[uuid.UUID, str]] = []
        for n, (currency, tax) in enumerate(CUSTOMERS):
            outcome = self.ledger.register_customer(
                c.RegisterCustomer(
                    f"prop-{suffix}-{n}", f"{n}-{suffix}@example.com", currency, tax_rate_bps=tax
                ),
                self.ctx(),
            )
            self.customers.append((outcome.resource_id, currency))
        self.invoices: list[tuple[uuid.UUID, int]] = []  # id, customer index
        self.payments: list[tuple[uuid.UUID, int]] = []  # id, amount
        self.position = 0

    def ctx(self) -> c.CommandContext:
        self.at += timedelta(hours=13)
        self.days.add(self.at.date())
        return c.CommandContext(occurred_at=self.at, actor="property-test")

    def run(self, kind: str, a: int, b: int, d: Any) -> None:
        with contextlib.suppress(DomainError):
            getattr(self, kind)(a, b, d)

    def _done(self, outcome: Outcome) -> Outcome:
        self.position = max(self.position, outcome.position)
        return outcome

    def draft(self, customer: int, amount: int, discount: int) -> uuid.UUID:
        customer_id, currency = self.customers[customer]
        line = c.InvoiceLine("service", 1, amount)
        outcome = self._done(
            self.ledger.draft_invoice(
                c.DraftInvoice(customer_id, currency, [line], discount=discount), self.ctx()
            )
        )
        self.invoices.append((outcome.resource_id, customer))
        return outcome.resource_id

    def invoice(self, customer: int, amount: int, discount: int) -> None:
        invoice_id = self.draft(customer, amount, discount)
        due = (self.at + timedelta(days=30)).date()
        self._done(self.ledger.finalize_invoice(c.FinalizeInvoice(invoice_id, due), self.ctx()))

    def _pay(self, customer: int, amount: int, invoice_id: uuid.UUID | None, succeeds: bool) -> None:
        customer_id, currency = self.customers[customer]
        outcome = self._done(
            self.ledger.initiate_payment(
                c.InitiatePayment(customer_id, amount, currency, invoice_id), self.ctx()
            )
        )
        if succeeds:
            self._done(self.ledger.succeed_payment(c.SucceedPayment(outcome.resource_id), self.ctx()))
            self.payments.append((outcome.resource_id, amount))
        else:
            self._done(self.ledger.fail_payment(c.FailPayment(outcome.resource_id), self.ctx()))

    def pay(self, which: int, percent: int, succeeds: bool) -> None:
        if not self.invoices:
            return
        invoice_id, customer = self.invoices[which % len(self.invoices)]
        remaining = int(self.ledger.repository.get(invoice_id).amount_remaining)
        self._pay(customer, max(1, remaining * percent // 100), invoice_id, succeeds)

    def prepay(self, customer: int, amount: int, succeeds: bool) -> None:
        self._pay(customer, amount, None, succeeds)

    def refund(self, which: int, percent: int, _: Any) -> None:
        if not self.payments:
            return
        payment_id, amount = self.payments[which % len(self.payments)]
        refund = c.RefundPayment(payment_id, max(1, amount * percent // 100))
        self._done(self.ledger.refund_payment(refund, self.ctx()))

    def void(self, which: int, *_: Any) -> None:
        if self.invoices:
            invoice_id, _customer = self.invoices[which % len(self.invoices)]
            self._done(self.ledger.void_invoice(c.VoidInvoice(invoice_id), self.ctx()))

    def write_off(self, which: int, *_: Any) -> None:
        if self.invoices:
            invoice_id, _customer = self.invoices[which % len(self.invoices)]
            invoice = c.MarkInvoiceUncollectible(invoice_id)
            self._done(self.ledger.mark_invoice_uncollectible(invoice, self.ctx()))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=st.lists(operation, min_size=1, max_size=20), start_day=st.integers(0, 300))
def test_trial_balances_balance_and_receivables_match_the_read_model(
    container: Container, operations: list[tuple[str, int, int, Any]], start_day: int
) -> None:
    # Each example adds to the same store: later examples check the histories of all before.
    start = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=start_day)
    history = History(container, start)
    for op in operations:
        history.run(*op)
    assert wait_for_position(container.pool, CORE_PROJECTION, history.position, 10)

    with container.pool.connection() as conn:
        for day in [*sorted(history.days), datetime.now(UTC).date()]:
            balances = trial_balance(conn, as_of=day, currency=None)
            for totals in balances["totals"]:
                assert totals["debit"] == totals["credit"], (day, totals)
            receivable = {
                a["currency"]: a["balance"]
                for a in balances["accounts"]
                if a["account"] == "accounts_receivable"
            }
            for currency, _tax in CUSTOMERS:
                assert receivable.get(currency, 0) == unpaid_total(conn, currency, day), (day, currency)

        today = trial_balance(conn, as_of=datetime.now(UTC).date(), currency=None)
        receivable = {
            a["currency"]: a["balance"] for a in today["accounts"] if a["account"] == "accounts_receivable"
        }
        rows: list[Any] = conn.execute(
            "SELECT currency, sum(amount_remaining)::bigint AS remaining FROM rm_invoices"
            " WHERE status = 'open' GROUP BY currency"
        ).fetchall()
    open_remaining = {r["currency"]: r["remaining"] for r in rows}
    for currency in set(receivable) | set(open_remaining):
        assert receivable.get(currency, 0) == open_remaining.get(currency, 0), currency
