"""Inactive customers (SPEC section 10, seed 004): a customer with a live subscription and no
usage for `inactivity_days` (LEDGER_INACTIVITY_DAYS, default 30) raises `customer_inactive` (low);
its next usage resolves it.

Time-driven, so it follows the ledger's clock: each `ClockTick.Ticked` (midnight UTC of a day,
recorded once per day, and for every day a test clock skips) asks which customers had a
subscription live at that moment and have been quiet for the whole window before it, counted
from their last usage, or, if they never had any, from the start of their latest live
subscription. Usage recorded after the tick's moment (a tick handled late) counts as activity:
the alert it would raise would be resolved by that usage anyway. Customers whose alert the
alerts read model already shows open are left alone, so a quiet customer is not re-raised (one
more record in the log) every day. A tick also resolves the open alerts, raised before it, of
customers who no longer have a live subscription."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from domain import ids
from projections.core import StoredEventRow

if TYPE_CHECKING:
    from projections.policies import Policies

ALERT = "customer_inactive"

# Customers with a subscription live at %(moment)s, their latest live start and their last usage.
_LIVE = """
SELECT s.customer_id, max(s.started_at) AS started
FROM rm_subscriptions s
WHERE s.started_at <= %(moment)s AND (s.ended_at IS NULL OR s.ended_at > %(moment)s)
GROUP BY s.customer_id
"""
_QUIET = f"""
SELECT l.customer_id, l.started, u.last_at FROM ({_LIVE}) l
LEFT JOIN LATERAL (
    SELECT max(p.last_at) AS last_at FROM rm_usage_periods p WHERE p.customer_id = l.customer_id
) u ON true
WHERE coalesce(u.last_at, l.started) <= %(since)s
  AND NOT EXISTS (SELECT 1 FROM rm_alerts a WHERE a.type = '{ALERT}' AND a.status = 'open'
                  AND a.customer_id = l.customer_id)
ORDER BY l.customer_id
"""
_NO_LONGER_LIVE = f"""
SELECT a.customer_id FROM rm_alerts a
WHERE a.type = '{ALERT}' AND a.status = 'open' AND a.customer_id IS NOT NULL AND a.raised_at < %(moment)s
  AND a.customer_id NOT IN (SELECT customer_id FROM ({_LIVE}) l)
ORDER BY a.customer_id
"""


def subject(customer_id: UUID) -> str:
    return f"customer:{customer_id}"


def check_inactive(policies: Policies, tick: StoredEventRow, moment: datetime) -> None:
    """On a daily tick at `moment`: raise for the quiet customers, resolve for those without a
    live subscription any more."""
    days = policies.inactivity_days
    params = {"moment": moment, "since": moment - timedelta(days=days)}
    with policies.pool.connection() as conn:
        quiet: list[Any] = conn.execute(_QUIET, params).fetchall()
        gone: list[Any] = conn.execute(_NO_LONGER_LIVE, {"moment": moment}).fetchall()
    for row in quiet:
        quiet_since = row["last_at"] or row["started"]
        what = "its last usage" if row["last_at"] else "its subscription started (no usage yet)"
        policies.raise_alert(
            tick,
            ALERT,
            subject(row["customer_id"]),
            f"customer {row['customer_id']} has had no usage for {days} days:"
            f" {what} at {quiet_since.isoformat()}",
            row["customer_id"],
            at=moment,
        )
    for row in gone:
        policies.resolve_alert(tick, ALERT, subject(row["customer_id"]), "no live subscription any more")


def usage_resumed(
    policies: Policies, usage: StoredEventRow, customer_id: UUID, occurred_at: datetime
) -> None:
    """Usage within the window resolves the customer's alert, if it ever had one (one look-up of
    the alert's stream: most customers never had one). A record older than the window (a late
    backfill) does not: the customer is still quiet."""
    alert_id = ids.alert_id(ALERT, subject(customer_id))
    if not policies.ledger.store.existing_streams([alert_id]):
        return
    if occurred_at <= policies.ledger.now() - timedelta(days=policies.inactivity_days):
        return
    policies.resolve_alert(usage, ALERT, subject(customer_id), f"usage at {occurred_at.isoformat()}")
