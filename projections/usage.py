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

from domain.metrics import UsagePeriods, UsageValue, aggregate_usage
from domain.periods import BillingGrid, GridFact, GridFactKind, billing_grid, months_in
from domain.usage import usage_group
from projections.core import Executor, StoredEventRow
from projections.set_sink import array_literal

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
    """Recompute the period totals the batch may have changed, from the stored records and
    billing facts (so the result does not depend on how the log was batched):

    - a customer whose subscriptions, plans or corrected records the batch touched: all of its
      periods (its billing grid or grouping may have changed, or a correction's period is not
      in the event);
    - a customer the batch only brought new records: just the periods those records count in
      (its grid and grouping are what they were, so no other period changes). Reading all of
      its records for every batch made a live projector's work grow with the customer's history."""
    usage_only: set[UUID] = set()
    whole: set[UUID] = set()
    for e in events:
        if e.customer_id is None:
            continue
        if e.type == "UsageRecord.Recorded":
            usage_only.add(e.customer_id)
        elif e.type == "UsageRecord.Corrected" or e.type.startswith("Subscription."):
            whole.add(e.customer_id)
    cur = conn.cursor(row_factory=tuple_row)
    revised = [e.stream_id for e in events if e.type == "Plan.Revised"]
    if revised:
        whole.update(r[0] for r in cur.execute(_REGROUPED, (revised,)).fetchall())
    usage_only -= whole
    if whole:
        _settle_customers(cur, sorted(whole))
    if usage_only:
        recorded = [e for e in events if e.customer_id in usage_only and e.type == "UsageRecord.Recorded"]
        group_by = _group_by(cur, sorted(usage_only))
        grouped = {c for c, of_customer in group_by.items() if any(of_customer.values())}
        if grouped:
            _settle_periods(cur, [e for e in recorded if e.customer_id in grouped])
        _add_to_periods(cur, [e for e in recorded if e.customer_id not in grouped])


_Totals = dict[tuple[UUID, str, datetime, datetime, str | None, str], list[UsageValue]]
_RECORD_COLUMNS = (
    "customer_id, metric, occurred_at, position, value, CASE WHEN customer_id = ANY(%s) THEN properties END"
)


_SHARED_PERIODS: dict[tuple[object, ...], UsagePeriods] = {}
_SHARED_PERIODS_MAX = 4096


def usage_periods(grids: Sequence[BillingGrid]) -> UsagePeriods:
    """The `UsagePeriods` of these grids, shared by all callers with equal grids (its answers
    are a pure function of the grids and the moment): a live projector reads a customer's grids
    again for every batch, and they seldom change. Bounded: forgotten all at once when full."""
    key = tuple((g.subscription_id, g.started_at, g.ended_at, *g.segments) for g in grids)
    periods = _SHARED_PERIODS.get(key)
    if periods is None:
        if len(_SHARED_PERIODS) >= _SHARED_PERIODS_MAX:
            _SHARED_PERIODS.clear()
        periods = _SHARED_PERIODS[key] = UsagePeriods(grids)
    return periods


def _periods(cur: Any, customers: Sequence[UUID]) -> dict[UUID, UsagePeriods]:
    """Per customer, the usage period of a moment (`domain.metrics.usage_period_of` by its
    billing grids, each distinct answer computed once while its grids stay the same); a customer
    with no grid gets the calendar months."""
    no_grid = usage_periods([])
    periods: dict[UUID, UsagePeriods] = defaultdict(lambda: no_grid)
    for customer_id, grids in _grids(cur, customers).items():
        periods[customer_id] = usage_periods(grids)
    return periods


def _grids(cur: Any, customers: Sequence[UUID]) -> dict[UUID, list[BillingGrid]]:
    facts: dict[UUID, dict[UUID, list[GridFact]]] = defaultdict(lambda: defaultdict(list))
    for customer_id, subscription_id, position, occurred_at, kind, months, moment in cur.execute(
        "SELECT customer_id, subscription_id, position, occurred_at, kind, months, moment"
        " FROM rm_billing_facts WHERE customer_id = ANY(%s)",
        (list(customers),),
    ).fetchall():
        facts[customer_id][subscription_id].append(GridFact(position, occurred_at, kind, months, moment))
    grids: dict[UUID, list[BillingGrid]] = defaultdict(list)
    for customer_id, of_customer in facts.items():
        for subscription_id, sub_facts in of_customer.items():
            grid = billing_grid(str(subscription_id), sub_facts)
            if grid is not None:
                grids[customer_id].append(grid)
    return grids


def _settle_customers(cur: Any, customers: list[UUID]) -> None:
    """All the periods of these customers, from all their records."""
    group_by = _group_by(cur, customers)
    grouped = [c for c, of_customer in group_by.items() if any(of_customer.values())]
    records = cur.execute(
        f"SELECT {_RECORD_COLUMNS} FROM rm_usage_records WHERE customer_id = ANY(%s)",
        (grouped, customers),
    ).fetchall()
    cur.execute("DELETE FROM rm_usage_periods WHERE customer_id = ANY(%s)", (customers,))
    if not records:
        return
    periods = _periods(cur, sorted({r[0] for r in records}))
    totals: _Totals = defaultdict(list)
    _add(totals, records, periods, group_by)
    _insert(cur, totals)


def _settle_periods(cur: Any, recorded: list[StoredEventRow]) -> None:
    """The periods the new records count in. A record counts in the period holding its
    occurred_at, so every record of such a period occurred at or after the period's start:
    reading each (customer, metric) from its earliest such start on finds all of them."""
    customers = sorted({e.customer_id for e in recorded if e.customer_id is not None})
    periods = _periods(cur, customers)
    starts: dict[tuple[UUID, str], set[datetime]] = defaultdict(set)
    for e in recorded:
        customer_id = e.customer_id
        if customer_id is None:
            continue
        start, _, _ = periods[customer_id].of(e.occurred_at)
        starts[(customer_id, e.payload["metric"])].add(start)
    keys = sorted(starts, key=lambda key: (str(key[0]), key[1]))
    group_by = _group_by(cur, customers)
    grouped = [c for c, of_customer in group_by.items() if any(of_customer.values())]
    records = cur.execute(
        f"SELECT {_RECORD_COLUMNS} FROM unnest(%s::uuid[], %s::text[], %s::timestamptz[]) AS a(c, m, low)"
        " JOIN rm_usage_records ON customer_id = a.c AND metric = a.m AND occurred_at >= a.low",
        (grouped, [c for c, _ in keys], [m for _, m in keys], [min(starts[key]) for key in keys]),
    ).fetchall()
    deleted = [(c, m, s) for c, m in keys for s in sorted(starts[(c, m)])]
    cur.execute(
        "DELETE FROM rm_usage_periods p USING unnest(%s::uuid[], %s::text[], %s::timestamptz[]) AS a(c, m, s)"
        " WHERE p.customer_id = a.c AND p.metric = a.m AND p.period_start = a.s",
        ([c for c, _, _ in deleted], [m for _, m, _ in deleted], [s for _, _, s in deleted]),
    )
    totals: _Totals = defaultdict(list)
    _add(totals, records, periods, group_by)
    _insert(cur, {key: values for key, values in totals.items() if key[2] in starts[(key[0], key[1])]})


# New records added to their periods' totals, for customers whose quotas group nothing (every
# record counts under the group ""). Each record is read back as stored (the value as numeric)
# and counted only if this event wrote it (its position): a record id seen before adds nothing.
# A period's records all came before these in the log, so on equal occurred_at the new one is
# the last.
_ADD_TO_PERIODS = """
INSERT INTO rm_usage_periods AS p (customer_id, metric, period_start, period_end, subscription_id,
    grp, records, used_sum, used_max, used_last, last_at)
SELECT r.customer_id, r.metric, a.s, min(a.e), min(a.sub)::uuid, '', count(*), sum(r.value),
       max(r.value), (array_agg(r.value ORDER BY r.occurred_at DESC, r.position DESC))[1],
       max(r.occurred_at)
FROM unnest(%s::uuid[], %s::bigint[], %s::timestamptz[], %s::timestamptz[], %s::text[])
     AS a(id, pos, s, e, sub)
JOIN rm_usage_records r ON r.record_id = a.id AND r.position = a.pos
GROUP BY r.customer_id, r.metric, a.s
ORDER BY r.customer_id::text, r.metric, a.s
ON CONFLICT (customer_id, metric, period_start, grp) DO UPDATE SET
    records = p.records + excluded.records,
    used_sum = p.used_sum + excluded.used_sum,
    used_max = greatest(p.used_max, excluded.used_max),
    used_last = CASE WHEN p.last_at IS NULL OR excluded.last_at >= p.last_at
                     THEN excluded.used_last ELSE p.used_last END,
    last_at = greatest(p.last_at, excluded.last_at)
"""


def _add_to_periods(cur: Any, recorded: list[StoredEventRow]) -> None:
    """Each new record added to the totals of its period (see `_ADD_TO_PERIODS`): what a
    recomputation of that period from all its records gives, without reading them."""
    if not recorded:
        return
    periods = _periods(cur, sorted({e.customer_id for e in recorded if e.customer_id is not None}))
    columns: tuple[list[Any], ...] = ([], [], [], [], [])
    for e in recorded:
        if e.customer_id is None:
            continue
        start, end, subscription_id = periods[e.customer_id].of(e.occurred_at)
        for column, value in zip(
            columns, (e.stream_id, e.position, start, end, subscription_id), strict=True
        ):
            column.append(value)
    # Sent as array literals (text, cast by the statement): psycopg's array dumper costs more.
    cur.execute(_ADD_TO_PERIODS, [array_literal(column).decode() for column in columns])


def _add(
    totals: _Totals, records: Sequence[Any], periods: dict[UUID, UsagePeriods], group_by: GroupBy
) -> None:
    for customer_id, metric, occurred_at, position, value, properties in records:
        start, end, subscription_id = periods[customer_id].of(occurred_at)
        by = group_by.get(customer_id, {}).get(subscription_id, {}).get(metric)
        group = usage_group(properties, by)
        totals[(customer_id, metric, start, end, subscription_id, group)].append(
            UsageValue(occurred_at, position, value)
        )


def _insert(cur: Any, totals: _Totals) -> None:
    if not totals:
        return
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
