"""Read queries over the core read models. Lists are keyset-paginated on the creating position."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

from psycopg import Connection

from domain.errors import InvalidValue


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


def encode_token(kind: str, value: str) -> str:
    """An opaque pagination cursor: what kind of key it holds, and the last key seen."""
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode().rstrip("=")


def decode_token(cursor: str, kind: str) -> str:
    """The key inside a cursor this API returned; anything else is a 422 on `cursor`."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        found, _, value = base64.urlsafe_b64decode(padded).decode().partition(":")
        if found != kind:
            raise ValueError(found)
        return value
    except ValueError:
        raise InvalidValue("the cursor is not one this API returned", field="cursor") from None


def encode_cursor(seq: int) -> str:
    return encode_token("seq", str(seq))


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    value = decode_token(cursor, "seq")
    try:
        return int(value)
    except ValueError:
        raise InvalidValue("the cursor is not one this API returned", field="cursor") from None


def _page(
    conn: Connection[Any],
    select: str,
    filters: dict[str, Any],
    cursor: str | None,
    limit: int,
) -> Page:
    clauses = ["seq > %(after)s"]
    params: dict[str, Any] = {"after": decode_cursor(cursor), "limit": limit + 1}
    for column, value in filters.items():
        if value is not None:
            clauses.append(f"{column} = %({column})s")
            params[column] = value
    rows: list[dict[str, Any]] = conn.execute(
        f"{select} WHERE {' AND '.join(clauses)} ORDER BY seq LIMIT %(limit)s", params
    ).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_cursor(rows[-1]["seq"]) if more and rows else None)


PLAN_SELECT = "SELECT * FROM rm_plans"


def list_plans(conn: Connection[Any], *, status: str | None, cursor: str | None, limit: int) -> Page:
    return _page(conn, PLAN_SELECT, {"status": status}, cursor, limit)


def get_plan(conn: Connection[Any], code: str) -> dict[str, Any] | None:
    row: dict[str, Any] | None = conn.execute(f"{PLAN_SELECT} WHERE code = %s", (code,)).fetchone()
    return row


# Customer health (SPEC 4): churned when it had MRR and has none; at_risk with a past_due
# subscription, an overdue invoice or an unresolved failed payment (failed, not retried since, and
# its invoice, if any, not settled by another payment, a void or a write-off); active otherwise.
# MRR is the customer's as of today by the MRR definition (its latest movement: a movement to 0
# means it had MRR and lost it).
CUSTOMER_SELECT = """
SELECT * FROM (
  SELECT c.*, coalesce(m.mrr, 0) AS mrr, coalesce(l.lifetime_value, 0) AS lifetime_value,
    CASE
      WHEN m.mrr = 0 THEN 'churned'
      WHEN EXISTS (SELECT 1 FROM rm_subscriptions s WHERE s.customer_id = c.id AND s.status = 'past_due')
        OR EXISTS (SELECT 1 FROM rm_invoices i WHERE i.customer_id = c.id AND i.status = 'open'
                   AND i.amount_remaining > 0 AND i.due_date < %(today)s)
        OR EXISTS (SELECT 1 FROM rm_payments p WHERE p.customer_id = c.id AND p.status = 'failed'
                   AND NOT EXISTS (SELECT 1 FROM rm_invoices pi WHERE pi.id = p.invoice_id
                                   AND pi.status IN ('paid', 'void', 'uncollectible')))
      THEN 'at_risk'
      ELSE 'active'
    END AS status
  FROM rm_customers c
  LEFT JOIN LATERAL (
    SELECT mv.mrr_after AS mrr FROM rm_mrr_movements mv
    WHERE mv.customer_id = c.id AND mv.day <= %(today)s ORDER BY mv.day DESC LIMIT 1
  ) m ON true
  LEFT JOIN LATERAL (
    SELECT sum(p.amount - p.amount_refunded) AS lifetime_value FROM rm_payments p
    WHERE p.customer_id = c.id AND p.status IN ('succeeded', 'refunded')
  ) l ON true
) customers
"""


def list_customers(
    conn: Connection[Any], *, status: str | None, today: date, cursor: str | None, limit: int
) -> Page:
    clauses = ["seq > %(after)s"]
    params: dict[str, Any] = {"after": decode_cursor(cursor), "limit": limit + 1, "today": today}
    if status is not None:
        clauses.append("status = %(status)s")
        params["status"] = status
    rows: list[dict[str, Any]] = conn.execute(
        f"{CUSTOMER_SELECT} WHERE {' AND '.join(clauses)} ORDER BY seq LIMIT %(limit)s", params
    ).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_cursor(rows[-1]["seq"]) if more and rows else None)


def get_customer(conn: Connection[Any], customer_id: UUID, today: date) -> dict[str, Any] | None:
    row: dict[str, Any] | None = conn.execute(
        f"{CUSTOMER_SELECT} WHERE id = %(id)s", {"id": customer_id, "today": today}
    ).fetchone()
    return row


def _by_id(conn: Connection[Any], table: str, resource_id: UUID) -> dict[str, Any] | None:
    row: dict[str, Any] | None = conn.execute(
        f"SELECT * FROM {table} WHERE id = %s", (resource_id,)
    ).fetchone()
    return row


def list_subscriptions(
    conn: Connection[Any], *, customer_id: UUID | None, status: str | None, cursor: str | None, limit: int
) -> Page:
    return _page(
        conn, "SELECT * FROM rm_subscriptions", {"customer_id": customer_id, "status": status}, cursor, limit
    )


def get_subscription(conn: Connection[Any], subscription_id: UUID) -> dict[str, Any] | None:
    return _by_id(conn, "rm_subscriptions", subscription_id)


def list_invoices(
    conn: Connection[Any], *, customer_id: UUID | None, status: str | None, cursor: str | None, limit: int
) -> Page:
    return _page(
        conn, "SELECT * FROM rm_invoices", {"customer_id": customer_id, "status": status}, cursor, limit
    )


def get_invoice(conn: Connection[Any], invoice_id: UUID) -> dict[str, Any] | None:
    return _by_id(conn, "rm_invoices", invoice_id)


def list_payments(
    conn: Connection[Any], *, customer_id: UUID | None, status: str | None, cursor: str | None, limit: int
) -> Page:
    return _page(
        conn, "SELECT * FROM rm_payments", {"customer_id": customer_id, "status": status}, cursor, limit
    )


def get_payment(conn: Connection[Any], payment_id: UUID) -> dict[str, Any] | None:
    return _by_id(conn, "rm_payments", payment_id)


def list_alerts(
    conn: Connection[Any],
    *,
    customer_id: UUID | None,
    status: str | None,
    severity: str | None,
    alert_type: str | None,
    cursor: str | None,
    limit: int,
) -> Page:
    filters = {"customer_id": customer_id, "status": status, "severity": severity, "type": alert_type}
    return _page(conn, "SELECT * FROM rm_alerts", filters, cursor, limit)


def get_alert(conn: Connection[Any], alert_id: UUID) -> dict[str, Any] | None:
    return _by_id(conn, "rm_alerts", alert_id)
