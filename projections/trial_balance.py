"""The trial balance over the journal (`projections/journal.py`): per account and currency, the
debits and credits of every entry dated (occurred_at, business time) on or before a day, UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from psycopg import Connection

BALANCES = (
    "SELECT account, currency, sum(debit)::bigint AS debit, sum(credit)::bigint AS credit"
    " FROM journal_lines WHERE occurred_at < %(end)s"
    " AND (%(currency)s::text IS NULL OR currency = %(currency)s::text)"
    " GROUP BY account, currency ORDER BY currency, account"
)


def end_of_day(day: date) -> datetime:
    """The first instant after `day` (UTC): entries strictly before it are 'as of' the day."""
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)


def trial_balance(conn: Connection[Any], *, as_of: date, currency: str | None) -> dict[str, Any]:
    rows: list[dict[str, Any]] = conn.execute(
        BALANCES, {"end": end_of_day(as_of), "currency": currency}
    ).fetchall()
    accounts = [{**r, "balance": r["debit"] - r["credit"]} for r in rows]
    totals: dict[str, dict[str, Any]] = {}
    for a in accounts:
        t = totals.setdefault(a["currency"], {"currency": a["currency"], "debit": 0, "credit": 0})
        t["debit"] += a["debit"]
        t["credit"] += a["credit"]
    for t in totals.values():
        t["balanced"] = t["debit"] == t["credit"]
    return {"as_of": as_of, "accounts": accounts, "totals": list(totals.values())}
