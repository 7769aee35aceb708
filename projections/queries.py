"""Read queries over the core read models. Lists are keyset-paginated on the creating position."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

from psycopg import Connection

from domain.billing import tax_note
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


def with_customer_name(table: str) -> str:
    """The rows of `table` with their customer's name beside them (lists show who, not an id)."""
    # A scalar subquery, not a join: with ORDER BY seq LIMIT n, PostgreSQL looks the name up for
    # the n rows of the page only, not for the whole table.
    return (
        f"SELECT * FROM (SELECT t.*, (SELECT c.name FROM rm_customers c WHERE c.id = t.customer_id)"
        f" AS customer_name FROM {table} t) named"
    )


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
    CASE WHEN m.mrr = 0 THEN 'churned' WHEN r.at_risk THEN 'at_risk' ELSE 'active' END AS status
  FROM rm_customers c
  LEFT JOIN LATERAL (
    SELECT mv.mrr_after AS mrr FROM rm_mrr_movements mv
    WHERE mv.customer_id = c.id AND mv.day <= %(today)s ORDER BY mv.day DESC LIMIT 1
  ) m ON true
  LEFT JOIN LATERAL (
    SELECT sum(p.amount - p.amount_refunded) AS lifetime_value FROM rm_payments p
    WHERE p.customer_id = c.id AND p.status IN ('succeeded', 'refunded')
  ) l ON true
  CROSS JOIN LATERAL (
    SELECT EXISTS (SELECT 1 FROM rm_subscriptions s WHERE s.customer_id = c.id AND s.status = 'past_due')
        OR EXISTS (SELECT 1 FROM rm_invoices i WHERE i.customer_id = c.id AND i.status = 'open'
                   AND i.amount_remaining > 0 AND i.due_date < %(today)s)
        OR EXISTS (SELECT 1 FROM rm_payments p WHERE p.customer_id = c.id AND p.status = 'failed'
                   AND NOT EXISTS (SELECT 1 FROM rm_invoices pi WHERE pi.id = p.invoice_id
                                   AND pi.status IN ('paid', 'void', 'uncollectible'))) AS at_risk
    -- Kept a subquery of its own (OFFSET 0), its checks run for each customer of the page
    -- through the customer's indexes; flattened, PostgreSQL would gather every past-due,
    -- overdue and failed row of the ledger first to serve a page of 25.
    OFFSET 0
  ) r
) customers
"""

# The customers at risk but for those churned: a filter on that status looks these up by id
# (ARRAY keeps PostgreSQL from joining every customer against them before the page's LIMIT).
AT_RISK_CANDIDATES = """id = ANY(ARRAY(
  SELECT customer_id FROM rm_subscriptions WHERE status = 'past_due'
  UNION SELECT customer_id FROM rm_invoices WHERE status = 'open' AND amount_remaining > 0
    AND due_date < %(today)s
  UNION SELECT p.customer_id FROM rm_payments p WHERE p.status = 'failed'
    AND NOT EXISTS (SELECT 1 FROM rm_invoices pi WHERE pi.id = p.invoice_id
                    AND pi.status IN ('paid', 'void', 'uncollectible'))))"""


def like_pattern(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, its own % _ and \\ taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def list_customers(
    conn: Connection[Any],
    *,
    status: str | None,
    today: date,
    cursor: str | None,
    limit: int,
    search: str | None = None,
) -> Page:
    clauses = ["seq > %(after)s"]
    params: dict[str, Any] = {"after": decode_cursor(cursor), "limit": limit + 1, "today": today}
    if status is not None:
        clauses.append("status = %(status)s")
        params["status"] = status
    if status == "at_risk":
        clauses.append(AT_RISK_CANDIDATES)
    if search:
        # Name, e-mail or external id containing the text (any case), or the exact id.
        clauses.append(
            "(name ILIKE %(like)s OR email ILIKE %(like)s OR external_id ILIKE %(like)s"
            " OR id::text = lower(%(search)s))"
        )
        params["like"] = like_pattern(search)
        params["search"] = search
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


# A subscription's `mrr` is its monthly contribution while it contributes (active or past_due,
# SPEC 4); the row keeps the monthly amount of its terms whatever its status.
SUBSCRIPTION_VIEW = (
    "(SELECT s.*, CASE WHEN s.status IN ('active', 'past_due') THEN s.mrr ELSE 0 END AS contribution"
    " FROM rm_subscriptions s)"
)


def _subscription_view(row: dict[str, Any]) -> dict[str, Any]:
    row["mrr"] = row.pop("contribution")
    return row


def list_subscriptions(
    conn: Connection[Any], *, customer_id: UUID | None, status: str | None, cursor: str | None, limit: int
) -> Page:
    page = _page(
        conn,
        with_customer_name(SUBSCRIPTION_VIEW),
        {"customer_id": customer_id, "status": status},
        cursor,
        limit,
    )
    return Page([_subscription_view(r) for r in page.items], page.next_cursor)


def get_subscription(conn: Connection[Any], subscription_id: UUID) -> dict[str, Any] | None:
    row: dict[str, Any] | None = conn.execute(
        f"SELECT * FROM {SUBSCRIPTION_VIEW} v WHERE id = %s", (subscription_id,)
    ).fetchone()
    return None if row is None else _subscription_view(row)


def _invoice_view(row: dict[str, Any]) -> dict[str, Any]:
    row["tax_note"] = tax_note(row["tax_exempt"])
    failures = row.pop("payment_failures", 0)
    if row.get("dunning") is not None:
        # SPEC 8: {state, attempts, next_action_at}; attempts are the payment attempts that failed
        dunning = row["dunning"]
        row["dunning"] = {
            "state": dunning["state"],
            "attempts": failures,
            "next_action_at": dunning.get("next_action_at"),
            "steps_taken": dunning.get("steps_taken", 0),
            "final_action": dunning.get("final_action"),
        }
    return row


def list_invoices(
    conn: Connection[Any], *, customer_id: UUID | None, status: str | None, cursor: str | None, limit: int
) -> Page:
    page = _page(
        conn, with_customer_name("rm_invoices"), {"customer_id": customer_id, "status": status}, cursor, limit
    )
    return Page([_invoice_view(r) for r in page.items], page.next_cursor)


def get_invoice(conn: Connection[Any], invoice_id: UUID) -> dict[str, Any] | None:
    row = _by_id(conn, "rm_invoices", invoice_id)
    return None if row is None else _invoice_view(row)


def list_payments(
    conn: Connection[Any], *, customer_id: UUID | None, status: str | None, cursor: str | None, limit: int
) -> Page:
    return _page(
        conn, with_customer_name("rm_payments"), {"customer_id": customer_id, "status": status}, cursor, limit
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
    return _page(conn, with_customer_name("rm_alerts"), filters, cursor, limit)


def get_alert(conn: Connection[Any], alert_id: UUID) -> dict[str, Any] | None:
    return _by_id(conn, "rm_alerts", alert_id)


# ------------------------------------------------------------------ demo scenarios (simulation)


def pick_subscription(
    conn: Connection[Any], *, statuses: tuple[str, ...], customer_id: UUID | None
) -> dict[str, Any] | None:
    """One subscription in one of `statuses` (of the customer, when given), chosen at random."""
    row: dict[str, Any] | None = conn.execute(
        "SELECT * FROM rm_subscriptions WHERE status = ANY(%(statuses)s)"
        " AND (%(customer)s::uuid IS NULL OR customer_id = %(customer)s)"
        " ORDER BY random() LIMIT 1",
        {"statuses": list(statuses), "customer": customer_id},
    ).fetchone()
    return row


def pick_plan(conn: Connection[Any], code: str | None) -> dict[str, Any] | None:
    """The active plan with this code, or a random active monthly plan (any, if none is monthly)."""
    row: dict[str, Any] | None = conn.execute(
        "SELECT * FROM rm_plans WHERE status = 'active' AND (%(code)s::text IS NULL OR code = %(code)s)"
        " ORDER BY (interval = 'month') DESC, random() LIMIT 1",
        {"code": code},
    ).fetchone()
    return row


# ---------------------------------------------------------------------------- billing


def get_customer_row(conn: Connection[Any], customer_id: UUID) -> dict[str, Any] | None:
    return _by_id(conn, "rm_customers", customer_id)


def customer_balances(conn: Connection[Any], customer_id: UUID) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = conn.execute(
        "SELECT currency, amount FROM rm_customer_balances WHERE customer_id = %s ORDER BY currency",
        (customer_id,),
    ).fetchall()
    return rows


def list_coupons(conn: Connection[Any], *, cursor: str | None, limit: int) -> Page:
    return _page(conn, "SELECT * FROM rm_coupons", {}, cursor, limit)


def get_coupon(conn: Connection[Any], code: str) -> dict[str, Any] | None:
    row: dict[str, Any] | None = conn.execute("SELECT * FROM rm_coupons WHERE code = %s", (code,)).fetchone()
    return row


def list_credit_notes(
    conn: Connection[Any],
    *,
    customer_id: UUID | None,
    invoice_id: UUID | None,
    cursor: str | None,
    limit: int,
) -> Page:
    return _page(
        conn,
        with_customer_name("rm_credit_notes"),
        {"customer_id": customer_id, "invoice_id": invoice_id},
        cursor,
        limit,
    )


def get_credit_note(conn: Connection[Any], credit_note_id: UUID) -> dict[str, Any] | None:
    return _by_id(conn, "rm_credit_notes", credit_note_id)
