"""Receivables as of any date by business time (SPEC section 4).

Handlers record what changes an invoice's amount due (`rm_receivable_facts`): finalized (the
total and due date), payments applied, voided or written off. After each batch the invoices it
touched are recomputed into spans (`rm_receivable_spans`): while [valid_from, valid_to) the
invoice was unpaid with that amount_remaining. "As of A" reads the spans that contain the last
instant of day A, through a GiST index on the span, so the answer costs the number of invoices
unpaid then, not the size of the history."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

from psycopg import Connection
from psycopg.rows import tuple_row

from projections.core import Executor, StoredEventRow

RECEIVABLES_DDL = """
CREATE TABLE IF NOT EXISTS rm_receivable_facts (
    invoice_id uuid NOT NULL, position bigint NOT NULL, customer_id uuid NOT NULL,
    occurred_at timestamptz NOT NULL, kind text NOT NULL, amount bigint NOT NULL DEFAULT 0,
    due_date date, PRIMARY KEY (invoice_id, position)
);
CREATE TABLE IF NOT EXISTS rm_receivable_spans (
    invoice_id uuid NOT NULL, customer_id uuid NOT NULL, currency text NOT NULL,
    due_date date NOT NULL, amount_remaining bigint NOT NULL,
    valid_from timestamptz NOT NULL, valid_to timestamptz,
    PRIMARY KEY (invoice_id, valid_from)
);
CREATE INDEX IF NOT EXISTS rm_receivable_spans_when ON rm_receivable_spans
    USING gist (tstzrange(valid_from, valid_to, '[)'));
"""
RECEIVABLES_TABLES = ("rm_receivable_facts", "rm_receivable_spans")

_FACT_OF_EVENT = {
    "Invoice.Finalized": "finalized",
    "Invoice.PaymentApplied": "payment",
    "Invoice.Voided": "closed",
    "Invoice.MarkedUncollectible": "closed",
    "Invoice.Credited": "payment",  # a credit note lowers what remains, as a payment does
}


def apply_receivable_fact(cur: Executor, e: StoredEventRow) -> None:
    kind = _FACT_OF_EVENT.get(e.type)
    if kind is None or e.customer_id is None:
        return
    p = e.payload
    if kind == "finalized":
        amount = max(p["total"], 0) - p.get("balance_applied", 0)  # what the credit balance left to pay
    elif e.type == "Invoice.Credited":
        amount = p["against_remaining"]
    else:
        amount = p["amount"] if kind == "payment" else 0
    cur.execute(
        "INSERT INTO rm_receivable_facts (invoice_id, position, customer_id, occurred_at, kind, amount,"
        " due_date) VALUES (%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
        (e.stream_id, e.position, e.customer_id, e.occurred_at, kind, amount, p.get("due_date")),
    )


@dataclass(frozen=True)
class Span:
    amount_remaining: int
    valid_from: datetime
    valid_to: datetime | None


def unpaid_spans(facts: Sequence[tuple[int, datetime, str, int]]) -> list[Span]:
    """(position, occurred_at, kind, amount) facts → the spans during which the invoice was
    unpaid, in business-time order. Payments recorded as occurring before the finalization
    count from the finalization on."""
    spans: list[Span] = []
    total: int | None = None
    paid = 0
    closed = False
    opened_at: datetime | None = None
    for _position, occurred_at, kind, amount in sorted(facts, key=lambda f: (f[1], f[0])):
        before = None if total is None or closed else total - paid
        if kind == "finalized":
            total = amount
        elif kind == "payment":
            paid += amount
        else:
            closed = True
        after = None if total is None or closed else total - paid
        if after == before:
            continue
        if before is not None and before > 0 and opened_at is not None and opened_at < occurred_at:
            spans.append(Span(before, opened_at, occurred_at))
        opened_at = occurred_at
    remaining = None if total is None or closed else total - paid
    if remaining is not None and remaining > 0 and opened_at is not None:
        spans.append(Span(remaining, opened_at, None))
    return spans


def settle_receivables(conn: Connection[Any], events: Sequence[StoredEventRow]) -> None:
    invoices = sorted({e.stream_id for e in events if e.type in _FACT_OF_EVENT})
    if not invoices:
        return
    cur = conn.cursor(row_factory=tuple_row)
    rows = cur.execute(
        "SELECT f.invoice_id, f.customer_id, i.currency, f.position, f.occurred_at, f.kind, f.amount,"
        " f.due_date FROM rm_receivable_facts f JOIN rm_invoices i ON i.id = f.invoice_id"
        " WHERE f.invoice_id = ANY(%s)",
        (invoices,),
    ).fetchall()
    facts: dict[UUID, list[tuple[int, datetime, str, int]]] = defaultdict(list)
    about: dict[UUID, tuple[UUID, str]] = {}
    due: dict[UUID, date] = {}
    for invoice_id, customer_id, currency, position, occurred_at, kind, amount, due_date in rows:
        facts[invoice_id].append((position, occurred_at, kind, amount))
        about[invoice_id] = (customer_id, currency)
        if due_date is not None:
            due[invoice_id] = due_date
    cur.execute("DELETE FROM rm_receivable_spans WHERE invoice_id = ANY(%s)", (invoices,))
    spans = [
        (invoice_id, *about[invoice_id], due[invoice_id], s.amount_remaining, s.valid_from, s.valid_to)
        for invoice_id, invoice_facts in facts.items()
        if invoice_id in due
        for s in unpaid_spans(invoice_facts)
    ]
    if spans:
        cur.executemany(
            "INSERT INTO rm_receivable_spans (invoice_id, customer_id, currency, due_date,"
            " amount_remaining, valid_from, valid_to) VALUES (%s,%s,%s,%s,%s,%s,%s)",
            spans,
        )
