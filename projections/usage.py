"""Usage per customer, metric and billing period (SPEC section 4).

Handlers keep every usage record with its current value (a correction replaces it) and what each
subscription event says about its billing periods (`rm_billing_facts`: starts, trial ends,
interval changes, ends). After each batch, the customers it touched get their period totals
recomputed (`rm_usage_periods`): each record counts in the billing period that holds its
occurred_at, computed from the subscription's billing grid as a pure function of time
(`domain.metrics.usage_period_of`), so a late record lands in its own period and no renewal needs
to be recorded first. Sum, max and last are all kept; the plan's quota says which one applies,
and its limit is read at query time (a plan revision needs no rebuild)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import Connection
from psycopg.rows import tuple_row

from domain.metrics import UsageValue, aggregate_usage, usage_period_of
from domain.periods import BillingGrid, GridFact, GridFactKind, billing_grid, months_in
from projections.core import Executor, StoredEventRow

USAGE_DDL = """
CREATE TABLE IF NOT EXISTS rm_usage_records (
    record_id uuid PRIMARY KEY, position bigint NOT NULL, customer_id uuid NOT NULL,
    metric text NOT NULL, occurred_at timestamptz NOT NULL, value numeric NOT NULL
);
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
    PRIMARY KEY (customer_id, metric, period_start)
);
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
            "INSERT INTO rm_usage_records (record_id, position, customer_id, metric, occurred_at, value)"
            " VALUES (%s,%s,%s,%s,%s,%s::numeric) ON CONFLICT DO NOTHING",
            (e.stream_id, e.position, p["customer_id"], p["metric"], e.occurred_at, p["value"]),
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


def settle_usage(conn: Connection[Any], events: Sequence[StoredEventRow]) -> None:
    """Recompute the period totals of every customer the batch touched, from all their records
    and periods (so the result does not depend on how the log was batched)."""
    customers = sorted(
        {
            e.customer_id
            for e in events
            if e.customer_id is not None and (e.type in USAGE_EVENTS or e.type.startswith("Subscription."))
        }
    )
    if not customers:
        return
    cur = conn.cursor(row_factory=tuple_row)
    records = cur.execute(
        "SELECT customer_id, metric, occurred_at, position, value FROM rm_usage_records"
        " WHERE customer_id = ANY(%s)",
        (customers,),
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
    totals: dict[tuple[UUID, str, datetime, datetime, str | None], list[UsageValue]] = defaultdict(list)
    for customer_id, metric, occurred_at, position, value in records:
        start, end, subscription_id = usage_period_of(occurred_at, grids[customer_id])
        totals[(customer_id, metric, start, end, subscription_id)].append(
            UsageValue(occurred_at, position, value)
        )
    cur.executemany(
        "INSERT INTO rm_usage_periods (customer_id, metric, period_start, period_end, subscription_id,"
        " records, used_sum, used_max, used_last) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
        [
            (*key, len(values), *(aggregate_usage(values, a) for a in ("sum", "max", "last")))
            for key, values in sorted(totals.items(), key=lambda kv: (str(kv[0][0]), kv[0][1], kv[0][2]))
        ],
    )
