"""A customer's subscription status, as an on-premise instance asks for it with its own key
(SPEC section 10, seed 003: `GET /v1/customers/{id}/status`)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

from psycopg import Connection

from projections.queries import get_customer

# The subscription a status speaks of: the latest started that is not canceled, else the latest.
_CURRENT_SUBSCRIPTION = """
SELECT id, status, plan_code, trial_end, current_period_start, current_period_end, cancel_at_period_end
FROM rm_subscriptions WHERE customer_id = %s ORDER BY (status <> 'canceled') DESC, seq DESC LIMIT 1
"""


def customer_status(
    conn: Connection[Any], customer_id: UUID, today: date, now: datetime
) -> dict[str, Any] | None:
    """None if there is no such customer. `trial_active` is whether the subscription is in its
    trial at `now` (the ledger's now); `trial_end` stays where the trial ended."""
    customer = get_customer(conn, customer_id, today)
    if customer is None:
        return None
    sub: dict[str, Any] | None = conn.execute(_CURRENT_SUBSCRIPTION, (customer_id,)).fetchone()
    if sub is not None:
        trial_end = sub["trial_end"]
        sub["trial_active"] = sub["status"] == "trialing" and trial_end is not None and now < trial_end
    return {
        "customer_id": customer["id"],
        "name": customer["name"],
        "status": customer["status"],
        "subscription": sub,
    }
