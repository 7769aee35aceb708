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
from projections.versions import VersionChanges, version_chain

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
-- Versions by knowledge time (projections/versions.py), as for MRR movements.
ALTER TABLE rm_receivable_spans ADD COLUMN IF NOT EXISTS known_from bigint;
CREATE INDEX IF NOT EXISTS rm_receivable_spans_unversioned ON rm_receivable_spans (invoice_id)
    WHERE known_from IS NULL;
CREATE TABLE IF NOT EXISTS rm_receivable_spans_retired (
    invoice_id uuid NOT NULL, customer_id uuid NOT NULL, currency text NOT NULL,
    due_date date NOT NULL, amount_remaining bigint NOT NULL,
    valid_from timestamptz NOT NULL, valid_to timestamptz,
    known_from bigint, known_to bigint NOT NULL
);
-- By business time and knowledge time at once: a span replaced when its invoice was paid is
-- open-ended in business time, so it contains every later moment; only both ranges select it.
CREATE INDEX IF NOT EXISTS rm_receivable_spans_retired_known ON rm_receivable_spans_retired
    USING gist (tstzrange(valid_from, valid_to, '[)'), int8range(known_from, known_to, '[)'));
CREATE INDEX IF NOT EXISTS rm_receivable_spans_retired_unversioned ON rm_receivable_spans_retired
    (invoice_id) WHERE known_from IS NULL;
"""
RECEIVABLES_TABLES = ("rm_receivable_facts", "rm_receivable_spans", "rm_receivable_spans_retired")

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


SpanKey = tuple[UUID, datetime]  # invoice, valid_from
SpanRow = tuple[UUID, str, date, int, datetime | None]  # customer, currency, due, remaining, valid_to


def settle_receivables(conn: Connection[Any], events: Sequence[StoredEventRow]) -> None:
    """Recompute the spans of the invoices the batch touched, keeping a version per position at
    which a fact of the invoice arrived (see projections/versions.py)."""
    arrived: dict[UUID, list[int]] = defaultdict(list)
    for e in events:
        if e.type in _FACT_OF_EVENT:
            arrived[e.stream_id].append(e.position)
    invoices = sorted(arrived)
    if not invoices:
        return
    cur = conn.cursor(row_factory=tuple_row)
    rows = cur.execute(
        "SELECT f.invoice_id, f.customer_id, i.currency, f.position, f.occurred_at, f.kind, f.amount,"
        " f.due_date FROM rm_receivable_facts f JOIN rm_invoices i ON i.id = f.invoice_id"
        " WHERE f.invoice_id = ANY(%s)",
        (invoices,),
    ).fetchall()
    current_of: dict[UUID, dict[SpanKey, tuple[SpanRow, int | None]]] = defaultdict(dict)
    for (
        invoice_id,
        customer_id,
        currency,
        due_date,
        remaining,
        valid_from,
        valid_to,
        known_from,
    ) in cur.execute(
        "SELECT invoice_id, customer_id, currency, due_date, amount_remaining, valid_from, valid_to,"
        " known_from FROM rm_receivable_spans WHERE invoice_id = ANY(%s)",
        (invoices,),
    ).fetchall():
        current_of[invoice_id][(invoice_id, valid_from)] = (
            (customer_id, currency, due_date, remaining, valid_to),
            known_from,
        )
    facts_of: dict[UUID, list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows:
        facts_of[row[0]].append(row)
    chain: VersionChanges[SpanKey, SpanRow] = VersionChanges()
    for invoice_id in invoices:
        own = facts_of.get(invoice_id, [])
        steps = [
            (p, _spans_of(invoice_id, [f for f in own if f[3] <= p]))
            for p in sorted(set(arrived[invoice_id]))
        ]
        chain.extend(version_chain(current_of.get(invoice_id, {}), steps))
    if chain.live_deleted:
        cur.executemany(
            "DELETE FROM rm_receivable_spans WHERE invoice_id = %s AND valid_from = %s", chain.live_deleted
        )
    if chain.retired:
        cur.executemany(
            "INSERT INTO rm_receivable_spans_retired (invoice_id, customer_id, currency, due_date,"
            " amount_remaining, valid_from, valid_to, known_from, known_to)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            [(key[0], *row[:4], key[1], row[4], since, until) for key, row, since, until in chain.retired],
        )
    if chain.live_added:
        cur.executemany(
            "INSERT INTO rm_receivable_spans (invoice_id, customer_id, currency, due_date,"
            " amount_remaining, valid_from, valid_to, known_from) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)",
            [(key[0], *row[:4], key[1], row[4], since) for key, row, since in chain.live_added],
        )


def _spans_of(invoice_id: UUID, facts: Sequence[tuple[Any, ...]]) -> dict[SpanKey, SpanRow]:
    """The spans of one invoice from its rows of (invoice_id, customer_id, currency, position,
    occurred_at, kind, amount, due_date): none until a fact names its due date."""
    due: date | None = None
    about: tuple[UUID, str] | None = None
    for _, customer_id, currency, _position, _at, _kind, _amount, due_date in sorted(
        facts, key=lambda f: f[3]
    ):
        about = (customer_id, currency)
        if due_date is not None:
            due = due_date
    if due is None or about is None:
        return {}
    return {
        (invoice_id, s.valid_from): (about[0], about[1], due, s.amount_remaining, s.valid_to)
        for s in unpaid_spans([(f[3], f[4], f[5], f[6]) for f in facts])
    }
