"""Usage per customer, metric and billing period (SPEC section 4).

Handlers keep every usage record with its current value (a correction replaces it) and every
billing period a subscription has had (`rm_billing_periods`). After each batch, the customers it
touched get their period totals recomputed server-side (`rm_usage_periods`): each record counts
in the period that contains its occurred_at (so a late record lands in its own period), or in
its calendar month when no period does. Sum, max and last are all kept; the plan's quota says
which one applies, and its limit is read at query time (a plan revision needs no rebuild)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import Connection

from projections.core import Executor, StoredEventRow

USAGE_DDL = """
CREATE TABLE IF NOT EXISTS rm_usage_records (
    record_id uuid PRIMARY KEY, position bigint NOT NULL, customer_id uuid NOT NULL,
    metric text NOT NULL, occurred_at timestamptz NOT NULL, value numeric NOT NULL
);
CREATE INDEX IF NOT EXISTS rm_usage_records_customer ON rm_usage_records (customer_id, metric, occurred_at);
CREATE TABLE IF NOT EXISTS rm_billing_periods (
    subscription_id uuid NOT NULL, customer_id uuid NOT NULL, period_start timestamptz NOT NULL,
    period_end timestamptz NOT NULL, PRIMARY KEY (subscription_id, period_start)
);
CREATE INDEX IF NOT EXISTS rm_billing_periods_customer ON rm_billing_periods (customer_id, period_start);
CREATE TABLE IF NOT EXISTS rm_usage_periods (
    customer_id uuid NOT NULL, metric text NOT NULL, period_start timestamptz NOT NULL,
    period_end timestamptz NOT NULL, subscription_id uuid, records int NOT NULL,
    used_sum numeric NOT NULL, used_max numeric NOT NULL, used_last numeric NOT NULL,
    PRIMARY KEY (customer_id, metric, period_start)
);
"""
USAGE_TABLES = ("rm_usage_records", "rm_billing_periods", "rm_usage_periods")

PERIOD_EVENTS = frozenset(
    {"Subscription.Started", "Subscription.TrialEnded", "Subscription.Changed", "Subscription.Renewed"}
)
USAGE_EVENTS = frozenset({"UsageRecord.Recorded", "UsageRecord.Corrected"})


def apply_usage_fact(cur: Executor, e: StoredEventRow) -> None:
    p = e.payload
    if e.type == "UsageRecord.Recorded":
        cur.execute(
            "INSERT INTO rm_usage_records (record_id, position, customer_id, metric, occurred_at, value)"
            " VALUES (%s,%s,%s,%s,%s,%s::numeric) ON CONFLICT DO NOTHING",
            (e.stream_id, e.position, p["customer_id"], p["metric"], e.occurred_at, p["value"]),
        )
    elif e.type == "UsageRecord.Corrected":
        cur.execute(
            "UPDATE rm_usage_records SET value = %s::numeric WHERE record_id = %s", (p["value"], e.stream_id)
        )
    elif e.type in PERIOD_EVENTS and e.customer_id is not None:
        cur.execute(
            "INSERT INTO rm_billing_periods (subscription_id, customer_id, period_start, period_end)"
            " VALUES (%s,%s,%s,%s) ON CONFLICT (subscription_id, period_start)"
            " DO UPDATE SET period_end = excluded.period_end",
            (e.stream_id, e.customer_id, p["period_start"], p["period_end"]),
        )


# Each record's period: the latest-starting billing period of the customer that contains it,
# else its calendar month (UTC). `last` is the value of the latest record by occurred_at.
RECOMPUTE = """
INSERT INTO rm_usage_periods (customer_id, metric, period_start, period_end, subscription_id,
                              records, used_sum, used_max, used_last)
SELECT r.customer_id, r.metric,
       coalesce(p.period_start, date_trunc('month', r.occurred_at, 'UTC')),
       coalesce(p.period_end, date_trunc('month', r.occurred_at, 'UTC') + interval '1 month'),
       p.subscription_id, count(*), sum(r.value), max(r.value),
       (array_agg(r.value ORDER BY r.occurred_at DESC, r.position DESC))[1]
FROM rm_usage_records r
LEFT JOIN LATERAL (
    SELECT b.subscription_id, b.period_start, b.period_end FROM rm_billing_periods b
    WHERE b.customer_id = r.customer_id AND b.period_start <= r.occurred_at
      AND r.occurred_at < b.period_end
    ORDER BY b.period_start DESC, b.subscription_id LIMIT 1
) p ON true
WHERE r.customer_id = ANY(%s)
GROUP BY 1, 2, 3, 4, 5
"""


def settle_usage(conn: Connection[Any], events: Sequence[StoredEventRow]) -> None:
    customers = sorted(
        {
            e.customer_id
            for e in events
            if e.customer_id is not None and (e.type in USAGE_EVENTS or e.type in PERIOD_EVENTS)
        }
    )
    if not customers:
        return
    # Only customers with usage have anything to recompute.
    cur = conn.cursor()
    cur.execute("DELETE FROM rm_usage_periods WHERE customer_id = ANY(%s)", (customers,))
    cur.execute(RECOMPUTE, (customers,))
