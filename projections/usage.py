"""Usage per customer, metric and billing period (SPEC section 4).

Handlers keep every usage record with its current value (a correction replaces it) and what each
subscription event says about its billing periods (`rm_billing_facts`: starts, trial ends,
interval changes, ends). After each batch, the customers it touched get their period totals
recomputed (`rm_usage_periods`): each record counts in the billing period that holds its
occurred_at, computed from the subscription's billing grid as a pure function of time
(`domain.metrics.usage_period_of`), so a late record lands in its own period and no renewal needs
to be recorded first. Sum, max and last are all kept; the plan's quota says which one applies,
and its limit is read at query time (a plan revision needs no rebuild).

A quota may count per value of a usage property (`group_by`, SPEC 10): totals are then kept per
group (`grp`; usage without the property counts under the group ""), by the quota of the plan
the period's subscription is on now, as the quota rows read it. So a plan change settles its
customer again, and so does a revision of a plan that groups (or whose customers' usage was
grouped): the rows never depend on when the grouping was read."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from psycopg import Connection
from psycopg.rows import tuple_row

from domain.metrics import UsageValue, aggregate_usage, usage_period_of
from domain.periods import BillingGrid, GridFact, GridFactKind, billing_grid, months_in
from domain.usage import usage_group
from projections.core import Executor, StoredEventRow

USAGE_DDL = """
CREATE TABLE IF NOT EXISTS rm_usage_records (
    record_id uuid PRIMARY KEY, position bigint NOT NULL, customer_id uuid NOT NULL,
    metric text NOT NULL, occurred_at timestamptz NOT NULL, value numeric NOT NULL, properties jsonb
);
ALTER TABLE rm_usage_records ADD COLUMN IF NOT EXISTS properties jsonb;
CREATE INDEX IF NOT EXISTS rm_usage_records_customer ON rm_usage_records (customer_id, metric, occurred_at);
DROP TABLE IF EXISTS rm_billing_periods;
CREATE TABLE IF NOT EXISTS rm_billing_facts (
    subscription_id uuid NOT NULL, position bigint NOT NULL, customer_id uuid NOT NULL,
    occurred_at timestamptz NOT NULL, kind text NOT NULL, months int, moment timestamptz,
    PRIMARY KEY (subscription_id, position)
);
CREATE INDEX IF NOT EXISTS rm_billing_facts_customer ON rm_billing_facts (customer_id);
CREATE TABLE IF NOT EXISTS rm_usage_periods (
    customer_id uuid NOT NULL, metric text NOT NULL, period_start timestamptz NOT NULL,
    period_end timestamptz NOT NULL, subscription_id uuid, records int NOT NULL,
    used_sum numeric NOT NULL, used_max numeric NOT NULL, used_last numeric NOT NULL,
    grp text NOT NULL DEFAULT '', last_at timestamptz,
    CONSTRAINT rm_usage_periods_key PRIMARY KEY (customer_id, metric, period_start, grp)
);
ALTER TABLE rm_usage_periods ADD COLUMN IF NOT EXISTS grp text NOT NULL DEFAULT '';
ALTER TABLE rm_usage_periods ADD COLUMN IF NOT EXISTS last_at timestamptz;
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_constraint
                 WHERE conname = 'rm_usage_periods_key' AND conrelid = 'rm_usage_periods'::regclass) THEN
    ALTER TABLE rm_usage_periods DROP CONSTRAINT IF EXISTS rm_usage_periods_pkey;
    ALTER TABLE rm_usage_periods ADD CONSTRAINT rm_usage_periods_key
        PRIMARY KEY (customer_id, metric, period_start, grp);
    -- Rows settled before groups existed: their last usage, from their records.
    UPDATE rm_usage_periods p SET last_at = (
        SELECT max(r.occurred_at) FROM rm_usage_records r WHERE r.customer_id = p.customer_id
        AND r.metric = p.metric AND r.occurred_at >= p.period_start AND r.occurred_at < p.period_end);
  END IF;
END $$;
"""
USAGE_TABLES = ("rm_usage_records", "rm_billing_facts", "rm_usage_periods")

GRID_FACTS: dict[str, GridFactKind] = {
    "Subscription.Started": "started",
    "Subscription.TrialEnded": "trial_ended",
    "Subscription.Changed": "changed",
    "Subscription.Canceled": "canceled",
}
USAGE_EVENTS = frozenset({"UsageRecord.Recorded", "UsageRecord.Corrected"})


def apply_usage_fact(cur: Executor, e: StoredEventRow) -> None:
    p = e.payload
    if e.type == "UsageRecord.Recorded":
        cur.execute(
            "INSERT INTO rm_usage_records (record_id, position, customer_id, metric, occurred_at, value,"
            " properties) VALUES (%s,%s,%s,%s,%s,%s::numeric,%s::jsonb) ON CONFLICT DO NOTHING",
            (
                e.stream_id,
                e.position,
                p["customer_id"],
                p["metric"],
                e.occurred_at,
                p["value"],
                _properties_json(p.get("properties")),
            ),
        )
    elif e.type == "UsageRecord.Corrected":
        cur.execute(
            "UPDATE rm_usage_records SET value = %s::numeric WHERE record_id = %s", (p["value"], e.stream_id)
        )
    elif (kind := GRID_FACTS.get(e.type)) is not None and e.customer_id is not None:
        months = months_in(p["interval"], p["interval_count"]) if kind in ("started", "changed") else None
        moment = (
            p.get("trial_end") if kind == "started" else p.get("ended_at") if kind == "canceled" else None
        )
        cur.execute(
            "INSERT INTO rm_billing_facts (subscription_id, position, customer_id, occurred_at, kind,"
            " months, moment) VALUES (%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
            (e.stream_id, e.position, e.customer_id, e.occurred_at, kind, months, moment),
        )


def _properties_json(properties: Any) -> str | None:
    """A record's properties as JSON text for a jsonb column (None when there are none). jsonb
    refuses the NUL character: it is dropped from keys and strings (as `usage_group` does)."""
    if not isinstance(properties, dict) or not properties:
        return None
    try:
        encoded = orjson.dumps(properties)
        if b"\\u0000" in encoded:
            encoded = orjson.dumps(_without_nul(properties))
    except TypeError:
        return None
    return encoded.decode()


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


# For each subscription of these customers (oldest first), the property each quota of its plan
# groups by.
_GROUP_BY = """
SELECT s.customer_id, s.id,
       (SELECT jsonb_object_agg(q.metric, q.quota ->> 'group_by')
        FROM jsonb_each(pl.quotas) AS q(metric, quota)
        WHERE jsonb_typeof(q.quota) = 'object' AND q.quota ? 'group_by')
FROM rm_subscriptions s JOIN rm_plans pl ON pl.code = s.plan_code
WHERE s.customer_id = ANY(%s) ORDER BY s.seq
"""
# The customers of revised plans whose grouping may have changed: the plan groups, or their
# usage was grouped.
_REGROUPED = """
SELECT DISTINCT s.customer_id FROM rm_subscriptions s JOIN rm_plans pl ON pl.code = s.plan_code
WHERE pl.id = ANY(%s) AND (jsonb_path_exists(pl.quotas, '$.*.group_by')
      OR EXISTS (SELECT 1 FROM rm_usage_periods u WHERE u.customer_id = s.customer_id AND u.grp <> ''))
"""

GroupBy = dict[UUID, dict[str | None, dict[str, str]]]


def _group_by(cur: Any, customers: Sequence[UUID]) -> GroupBy:
    """Per customer and subscription id (None: usage outside any subscription, which takes the
    plan of the customer's latest subscription, as the quota rows do), metric -> group_by."""
    found: GroupBy = defaultdict(dict)
    for customer_id, subscription_id, group_by in cur.execute(_GROUP_BY, (list(customers),)).fetchall():
        found[customer_id][str(subscription_id)] = found[customer_id][None] = group_by or {}
    return found


def settle_usage(conn: Connection[Any], events: Sequence[StoredEventRow]) -> None:
    """Recompute the period totals of every customer the batch touched, from all their records
    and periods (so the result does not depend on how the log was batched)."""
    touched = {
        e.customer_id
        for e in events
        if e.customer_id is not None and (e.type in USAGE_EVENTS or e.type.startswith("Subscription."))
    }
    cur = conn.cursor(row_factory=tuple_row)
    revised = [e.stream_id for e in events if e.type == "Plan.Revised"]
    if revised:
        touched.update(r[0] for r in cur.execute(_REGROUPED, (revised,)).fetchall())
    customers = sorted(touched)
    if not customers:
        return
    group_by = _group_by(cur, customers)
    grouped = [c for c, of_customer in group_by.items() if any(of_customer.values())]
    records = cur.execute(
        "SELECT customer_id, metric, occurred_at, position, value,"
        " CASE WHEN customer_id = ANY(%s) THEN properties END FROM rm_usage_records"
        " WHERE customer_id = ANY(%s)",
        (grouped, customers),
    ).fetchall()
    cur.execute("DELETE FROM rm_usage_periods WHERE customer_id = ANY(%s)", (customers,))
    if not records:
        return
    facts: dict[UUID, dict[UUID, list[GridFact]]] = defaultdict(lambda: defaultdict(list))
    for customer_id, subscription_id, position, occurred_at, kind, months, moment in cur.execute(
        "SELECT customer_id, subscription_id, position, occurred_at, kind, months, moment"
        " FROM rm_billing_facts WHERE customer_id = ANY(%s)",
        (sorted({r[0] for r in records}),),
    ).fetchall():
        facts[customer_id][subscription_id].append(GridFact(position, occurred_at, kind, months, moment))
    grids: dict[UUID, list[BillingGrid]] = defaultdict(list)
    for customer_id, of_customer in facts.items():
        for subscription_id, sub_facts in of_customer.items():
            grid = billing_grid(str(subscription_id), sub_facts)
            if grid is not None:
                grids[customer_id].append(grid)
    totals: dict[tuple[UUID, str, datetime, datetime, str | None, str], list[UsageValue]] = defaultdict(list)
    for customer_id, metric, occurred_at, position, value, properties in records:
        start, end, subscription_id = usage_period_of(occurred_at, grids[customer_id])
        by = group_by.get(customer_id, {}).get(subscription_id, {}).get(metric)
        group = usage_group(properties, by)
        totals[(customer_id, metric, start, end, subscription_id, group)].append(
            UsageValue(occurred_at, position, value)
        )
    cur.executemany(
        "INSERT INTO rm_usage_periods (customer_id, metric, period_start, period_end, subscription_id,"
        " grp, records, used_sum, used_max, used_last, last_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
        [
            (
                *key,
                len(values),
                *(aggregate_usage(values, a) for a in ("sum", "max", "last")),
                max(v.occurred_at for v in values),
            )
            for key, values in sorted(
                totals.items(), key=lambda kv: (str(kv[0][0]), kv[0][1], kv[0][2], kv[0][5])
            )
        ],
    )
