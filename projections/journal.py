"""The double-entry journal, projected from the log: every event that moves money becomes one
balanced entry (lines whose debits equal their credits), in integer minor units of the
invoice's or payment's currency, dated by the event's occurred_at (business time). Each line
names its source event: stream id, version and position.

| event                          | debit                      | credit                                       |
|--------------------------------|----------------------------|----------------------------------------------|
| Invoice.Finalized              | accounts_receivable: total | revenue: subtotal-discount, tax_payable: tax |
|   with a credit balance applied| customer_credit: applied   | accounts_receivable: applied                 |
|   with a negative total        | revenue, tax_payable       | customer_credit: what is owed to the customer|
| Invoice.Credited (credit note) | refunds: all but refunded  | accounts_receivable: against what remained,  |
|                                |                            | customer_credit: the part credited           |
| Payment.Succeeded              | cash: amount               | customer_credit: amount                      |
| Invoice.PaymentApplied         | customer_credit: amount    | accounts_receivable: amount                  |
| Payment.Refunded, with invoice | refunds: amount            | cash: amount                                 |
| Payment.Refunded, no invoice   | customer_credit: amount    | cash: amount                                 |
| Invoice.MarkedUncollectible    | bad_debt: written_off      | accounts_receivable: written_off             |
| Invoice.Voided                 | the lines of the finalization entry, debits and credits swapped           |

Choices worth knowing:
- Cash received is first owed to the customer (`customer_credit`, unapplied payments) and moves
  to the invoice when the invoice records the payment as applied. A payment that names an
  invoice is applied in the same transaction, so its customer credit nets to zero at once; a
  payment without one stays a credit; an amount a provider collected beyond what an invoice
  could take stays a credit too. So `accounts_receivable` changes only with the invoice's own
  events, and always equals the sum of what remains on open invoices.
- A refund of an invoiced payment is booked to `refunds` (a contra-revenue account: revenue
  recognised stays as it was, and the refunds are visible apart). A refund of a payment that
  named no invoice gives back unapplied money: it reduces `customer_credit`.
- A void reverses the whole finalization (an invoice with payments applied cannot be voided);
  a draft invoice was never booked, so its void books nothing.
- A customer's credit balance is `customer_credit`: an invoice's negative total and a credit
  note's credited part put money there; finalization applies it to what the invoice owes. The
  refunded part of a credit note is booked when the payment's refund is (refunds / cash).

Handlers only send statements (never read into Python): amounts the event does not carry (an
invoice's currency, a payment's amount) come from the journal's own two small tables inside
the INSERT ... SELECT. Parameters are cast because replay sends them as untyped text."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from projections.core import Executor, Handler, StoredEventRow

JOURNAL_TABLES = ("journal_lines", "journal_invoices", "journal_payments")

JOURNAL_DDL = """
CREATE TABLE IF NOT EXISTS journal_invoices (
    id uuid PRIMARY KEY, customer_id uuid NOT NULL, currency text NOT NULL
);
CREATE TABLE IF NOT EXISTS journal_payments (
    id uuid PRIMARY KEY, customer_id uuid NOT NULL, invoice_id uuid, currency text NOT NULL,
    amount bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS journal_lines (
    position bigint NOT NULL, line int NOT NULL, stream_id uuid NOT NULL, version int NOT NULL,
    event_type text NOT NULL, occurred_at timestamptz NOT NULL, customer_id uuid,
    account text NOT NULL, currency text NOT NULL,
    debit bigint NOT NULL, credit bigint NOT NULL,
    PRIMARY KEY (position, line),
    CHECK (debit >= 0 AND credit >= 0 AND (debit = 0) <> (credit = 0))
);
CREATE INDEX IF NOT EXISTS journal_lines_by_date ON journal_lines (occurred_at, currency);
CREATE INDEX IF NOT EXISTS journal_lines_by_stream ON journal_lines (stream_id, event_type);
"""

ACCOUNTS = (
    "accounts_receivable",
    "revenue",
    "tax_payable",
    "cash",
    "customer_credit",
    "refunds",
    "bad_debt",
)

JOURNAL_HANDLERS: dict[str, Handler] = {}


def apply_journal(cur: Executor, event: StoredEventRow) -> None:
    handler = JOURNAL_HANDLERS.get(event.type)
    if handler is not None:
        handler(cur, event)


def books(event_type: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        JOURNAL_HANDLERS[event_type] = handler
        return handler

    return register


# Lines of one entry from a VALUES list joined to the row that knows the currency; zero lines
# (an invoice without tax) are left out.
_LINES = (
    "INSERT INTO journal_lines (position, line, stream_id, version, event_type, occurred_at,"
    " customer_id, account, currency, debit, credit)"
    " SELECT %s::bigint, l.line, %s::uuid, %s::int, %s::text, %s::timestamptz, src.customer_id,"
    " l.account, src.currency, l.debit, l.credit"
    " FROM {source} src, (VALUES {values}) AS l(line, account, debit, credit)"
    " WHERE src.id = %s::uuid AND (l.debit <> 0 OR l.credit <> 0)"
    " ON CONFLICT (position, line) DO NOTHING"
)


def _entry_sql(source: str, accounts: list[tuple[str, str]]) -> str:
    """An INSERT of one line per (debit account or '', credit account or '') pair; each line
    takes one amount parameter."""
    values = []
    for n, (debit, credit) in enumerate(accounts, start=1):
        account = debit or credit
        amount = "%s::bigint"
        values.append(
            f"({n}, '{account}', {amount if debit else '0::bigint'}, {amount if credit else '0::bigint'})"
        )
    return _LINES.format(source=source, values=", ".join(values))


def _book(cur: Executor, sql: str, e: StoredEventRow, source_id: object, *amounts: int) -> None:
    cur.execute(sql, (e.position, e.stream_id, e.version, e.type, e.occurred_at, *amounts, source_id))


FINALIZED = _entry_sql(
    "journal_invoices", [("accounts_receivable", ""), ("", "revenue"), ("", "tax_payable")]
)
PAYMENT_APPLIED = _entry_sql("journal_invoices", [("customer_credit", ""), ("", "accounts_receivable")])
WRITTEN_OFF = _entry_sql("journal_invoices", [("bad_debt", ""), ("", "accounts_receivable")])
PAYMENT_RECEIVED = (
    "INSERT INTO journal_lines (position, line, stream_id, version, event_type, occurred_at,"
    " customer_id, account, currency, debit, credit)"
    " SELECT %s::bigint, l.line, %s::uuid, %s::int, %s::text, %s::timestamptz, p.customer_id,"
    " l.account, p.currency, l.debit, l.credit FROM journal_payments p"
    " CROSS JOIN LATERAL (VALUES (1, 'cash', p.amount, 0::bigint),"
    " (2, 'customer_credit', 0::bigint, p.amount)) AS l(line, account, debit, credit)"
    " WHERE p.id = %s::uuid ON CONFLICT (position, line) DO NOTHING"
)
REFUNDED = (
    "INSERT INTO journal_lines (position, line, stream_id, version, event_type, occurred_at,"
    " customer_id, account, currency, debit, credit)"
    " SELECT %s::bigint, l.line, %s::uuid, %s::int, %s::text, %s::timestamptz, p.customer_id,"
    " l.account, p.currency, l.debit, l.credit FROM journal_payments p"
    " CROSS JOIN LATERAL (VALUES"
    " (1, CASE WHEN p.invoice_id IS NULL THEN 'customer_credit' ELSE 'refunds' END,"
    " %s::bigint, 0::bigint),"
    " (2, 'cash', 0::bigint, %s::bigint)) AS l(line, account, debit, credit)"
    " WHERE p.id = %s::uuid ON CONFLICT (position, line) DO NOTHING"
)
VOIDED = (
    "INSERT INTO journal_lines (position, line, stream_id, version, event_type, occurred_at,"
    " customer_id, account, currency, debit, credit)"
    " SELECT %s::bigint, f.line, %s::uuid, %s::int, %s::text, %s::timestamptz, f.customer_id,"
    " f.account, f.currency, f.credit, f.debit FROM journal_lines f"
    " WHERE f.stream_id = %s::uuid AND f.event_type = 'Invoice.Finalized'"
    " ON CONFLICT (position, line) DO NOTHING"
)


@books("Invoice.Drafted")
def invoice_drafted(cur: Executor, e: StoredEventRow) -> None:
    cur.execute(
        "INSERT INTO journal_invoices (id, customer_id, currency) VALUES (%s, %s, %s)"
        " ON CONFLICT (id) DO NOTHING",
        (e.stream_id, e.payload["customer_id"], e.payload["currency"]),
    )


@books("Invoice.Finalized")
def invoice_finalized(cur: Executor, e: StoredEventRow) -> None:
    p = e.payload
    total, applied = p["total"], p.get("balance_applied", 0)
    _book_signed(
        cur,
        e,
        [
            ("accounts_receivable", max(total, 0)),
            ("customer_credit", -max(-total, 0)),
            ("revenue", -(p["subtotal"] - p["discount"])),
            ("tax_payable", -p["tax"]),
            ("customer_credit", applied),
            ("accounts_receivable", -applied),
        ],
    )


@books("Invoice.Credited")
def invoice_credited(cur: Executor, e: StoredEventRow) -> None:
    p = e.payload
    against, to_balance = p["against_remaining"], p.get("to_balance", 0)
    # The refunded part is booked with the payment's refund (refunds / cash).
    _book_signed(
        cur,
        e,
        [
            ("refunds", against + to_balance),
            ("accounts_receivable", -against),
            ("customer_credit", -to_balance),
        ],
    )


def _book_signed(cur: Executor, e: StoredEventRow, lines: list[tuple[str, int]]) -> None:
    """An entry of the invoice `e` from (account, amount) lines: a positive amount is a debit,
    a negative one a credit; zero lines are left out (the sides stay balanced). The statement
    depends only on the accounts, not on the signs, so a batch writes every entry of a kind in
    one statement."""
    sql = _signed_entry_sql(tuple(account for account, _ in lines))
    _book(cur, sql, e, e.stream_id, *(part for _, amount in lines for part in (amount, amount)))


@lru_cache(maxsize=64)
def _signed_entry_sql(accounts: tuple[str, ...]) -> str:
    values = ", ".join(
        f"({n}, '{account}', greatest(%s::bigint, 0), greatest(-%s::bigint, 0))"
        for n, account in enumerate(accounts, start=1)
    )
    return _LINES.format(source="journal_invoices", values=values)


@books("Invoice.PaymentApplied")
def invoice_payment_applied(cur: Executor, e: StoredEventRow) -> None:
    amount = e.payload["amount"]
    _book(cur, PAYMENT_APPLIED, e, e.stream_id, amount, amount)


@books("Invoice.MarkedUncollectible")
def invoice_written_off(cur: Executor, e: StoredEventRow) -> None:
    written_off = e.payload["written_off"]
    _book(cur, WRITTEN_OFF, e, e.stream_id, written_off, written_off)


@books("Invoice.Voided")
def invoice_voided(cur: Executor, e: StoredEventRow) -> None:
    _book(cur, VOIDED, e, e.stream_id)


@books("Payment.Initiated")
def payment_initiated(cur: Executor, e: StoredEventRow) -> None:
    p = e.payload
    cur.execute(
        "INSERT INTO journal_payments (id, customer_id, invoice_id, currency, amount)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
        (e.stream_id, p["customer_id"], p["invoice_id"], p["currency"], p["amount"]),
    )


@books("Payment.AttachedToInvoice")
def payment_attached_to_invoice(cur: Executor, e: StoredEventRow) -> None:
    """Nothing moves: a later refund of the payment is booked as an invoiced one's."""
    cur.execute(
        "UPDATE journal_payments SET invoice_id = %s::uuid WHERE id = %s::uuid",
        (e.payload["invoice_id"], e.stream_id),
    )


@books("Payment.Succeeded")
def payment_succeeded(cur: Executor, e: StoredEventRow) -> None:
    _book(cur, PAYMENT_RECEIVED, e, e.stream_id)


@books("Payment.Refunded")
def payment_refunded(cur: Executor, e: StoredEventRow) -> None:
    amount = e.payload["amount"]
    _book(cur, REFUNDED, e, e.stream_id, amount, amount)
