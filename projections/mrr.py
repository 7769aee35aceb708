"""MRR by UTC day, per currency, with its five movements (SPEC section 4).

Handlers record each subscription event as a fact (`rm_mrr_facts`). After each batch, the
customers it touched are recomputed from all their facts (`domain.metrics`): their movements
(`rm_mrr_movements`, one row per customer, currency and day their MRR changes) are replaced
and the difference is added to the per-currency daily totals (`rm_mrr_daily`). The MRR of a
day is the running sum of the daily net movements, so a backdated change corrects every later
day at once, and `mrr(D) = mrr(D-1) + new + expansion + reactivation - contraction - churn`
holds by construction."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, cast
from uuid import UUID

from psycopg import Connection
from psycopg.rows import tuple_row

from domain.metrics import (
    MOVEMENT_KINDS,
    FactKind,
    Movement,
    SubscriptionFact,
    contribution,
    movements,
    mrr_series,
)
from projections.core import Executor, StoredEventRow, item_monthly_amount, monthly_amount
from projections.versions import VersionChanges, version_chain

MRR_DDL = """
CREATE TABLE IF NOT EXISTS rm_mrr_facts (
    subscription_id uuid NOT NULL, position bigint NOT NULL, customer_id uuid NOT NULL,
    currency text, occurred_at timestamptz NOT NULL, kind text NOT NULL,
    amount bigint NOT NULL DEFAULT 0, at timestamptz,
    PRIMARY KEY (subscription_id, position)
);
CREATE INDEX IF NOT EXISTS rm_mrr_facts_customer ON rm_mrr_facts (customer_id);
-- The add-on item an `item` fact is about (SPEC 10).
ALTER TABLE rm_mrr_facts ADD COLUMN IF NOT EXISTS item_id uuid;
CREATE TABLE IF NOT EXISTS rm_mrr_movements (
    customer_id uuid NOT NULL, currency text NOT NULL, day date NOT NULL, kind text NOT NULL,
    amount bigint NOT NULL, mrr_before bigint NOT NULL, mrr_after bigint NOT NULL,
    PRIMARY KEY (customer_id, currency, day)
);
CREATE INDEX IF NOT EXISTS rm_mrr_movements_day ON rm_mrr_movements (currency, day);
-- Versions by knowledge time (projections/versions.py): the position from which a row is
-- current, and the rows that stopped being current. Rows written before versions were kept
-- have no known_from: `known_at` replays the log until a `ledger replay` has stamped them.
ALTER TABLE rm_mrr_movements ADD COLUMN IF NOT EXISTS known_from bigint;
CREATE INDEX IF NOT EXISTS rm_mrr_movements_unversioned ON rm_mrr_movements (customer_id)
    WHERE known_from IS NULL;
CREATE TABLE IF NOT EXISTS rm_mrr_movements_retired (
    customer_id uuid NOT NULL, currency text NOT NULL, day date NOT NULL, kind text NOT NULL,
    amount bigint NOT NULL, mrr_before bigint NOT NULL, mrr_after bigint NOT NULL,
    known_from bigint, known_to bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS rm_mrr_movements_retired_day ON rm_mrr_movements_retired (currency, day);
CREATE INDEX IF NOT EXISTS rm_mrr_movements_retired_unversioned ON rm_mrr_movements_retired (customer_id)
    WHERE known_from IS NULL;
CREATE TABLE IF NOT EXISTS rm_mrr_daily (
    currency text NOT NULL, day date NOT NULL,
    new bigint NOT NULL DEFAULT 0, expansion bigint NOT NULL DEFAULT 0,
    contraction bigint NOT NULL DEFAULT 0, churn bigint NOT NULL DEFAULT 0,
    reactivation bigint NOT NULL DEFAULT 0,
    paying bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (currency, day)
);
-- `paying`: the day's net change in the number of paying customers (MRR above zero), so a count
-- at any day is a sum over days, not a search through every customer's movements. Tables made
-- before the column existed get it filled from the movements once.
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
                 AND table_name = 'rm_mrr_daily' AND column_name = 'paying') THEN
    ALTER TABLE rm_mrr_daily ADD COLUMN paying bigint NOT NULL DEFAULT 0;
    UPDATE rm_mrr_daily d SET paying = m.paying FROM (
      SELECT currency, day, sum((mrr_after > 0)::int - (mrr_before > 0)::int) AS paying
      FROM rm_mrr_movements GROUP BY currency, day) m
    WHERE d.currency = m.currency AND d.day = m.day;
  END IF;
END $$;
"""
MRR_TABLES = ("rm_mrr_facts", "rm_mrr_movements", "rm_mrr_movements_retired", "rm_mrr_daily")

INSERT_FACT = (
    "INSERT INTO rm_mrr_facts (subscription_id, position, customer_id, currency, occurred_at, kind,"
    " amount, at, item_id) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING"
)

_FACT_OF_EVENT: dict[str, FactKind] = {
    "Subscription.Started": "started",
    "Subscription.TrialEnded": "trial_ended",
    "Subscription.Changed": "changed",
    "Subscription.CancellationScheduled": "cancel_scheduled",
    "Subscription.CancellationWithdrawn": "cancel_withdrawn",
    "Subscription.Canceled": "canceled",
    "Subscription.ItemAdded": "item",
    "Subscription.ItemQuantityChanged": "item",
    "Subscription.ItemRemoved": "item",
}


def apply_mrr_fact(cur: Executor, e: StoredEventRow) -> None:
    kind = _FACT_OF_EVENT.get(e.type)
    if kind is None or e.customer_id is None:
        return
    p = e.payload
    amount = 0
    if kind in ("started", "changed"):
        amount = monthly_amount(p)
    elif kind == "item":
        amount = item_monthly_amount(p)
    at = {"started": "trial_end", "cancel_scheduled": "ends_at", "canceled": "ended_at"}.get(kind)
    currency = p.get("currency") if kind == "started" else None
    cur.execute(
        INSERT_FACT,
        (
            e.stream_id,
            e.position,
            e.customer_id,
            currency,
            e.occurred_at,
            kind,
            amount,
            p.get(at) if at else None,
            p.get("item_id"),
        ),
    )


def settle_mrr(conn: Connection[Any], events: Sequence[StoredEventRow]) -> None:
    arrived: dict[UUID, list[int]] = defaultdict(list)
    for e in events:
        if e.type in _FACT_OF_EVENT and e.customer_id:
            arrived[e.customer_id].append(e.position)
    if arrived:
        recompute_customers(conn, sorted(arrived), arrived)


MovementKey = tuple[UUID, str, date]
DAILY_COLUMNS = (*MOVEMENT_KINDS, "paying")


def _paying_change(m: Movement) -> int:
    """+1 when a customer starts paying that day, -1 when they stop, else 0. A customer's
    movements chain (each starts from the last one's MRR), so the changes up to a day sum to
    whether they pay at its end."""
    return int(m.mrr_after > 0) - int(m.mrr_before > 0)


def recompute_customers(
    conn: Connection[Any], customers: Sequence[UUID], arrived: dict[UUID, list[int]] | None = None
) -> None:
    """Recompute the customers' movements from their facts, keeping a version per position in
    `arrived` (the positions of each customer's facts in the batch; default: its last fact)."""
    cur = conn.cursor(row_factory=tuple_row)
    facts = cur.execute(
        "SELECT customer_id, subscription_id, position, currency, occurred_at, kind, amount, at, item_id"
        " FROM rm_mrr_facts WHERE customer_id = ANY(%s)",
        (list(customers),),
    ).fetchall()
    current: dict[MovementKey, tuple[Movement, int | None]] = {
        (r[0], r[1], r[2]): (Movement(r[2], r[3], r[4], r[5], r[6]), r[7])
        for r in cur.execute(
            "SELECT customer_id, currency, day, kind, amount, mrr_before, mrr_after, known_from"
            " FROM rm_mrr_movements WHERE customer_id = ANY(%s)",
            (list(customers),),
        ).fetchall()
    }
    old = {key: m for key, (m, _) in current.items()}
    current_of: dict[UUID, dict[MovementKey, tuple[Movement, int | None]]] = defaultdict(dict)
    for key, row in current.items():
        current_of[key[0]][key] = row
    facts_of: dict[UUID, list[tuple[Any, ...]]] = defaultdict(list)
    for f in facts:
        facts_of[f[0]].append(f)
    new: dict[MovementKey, Movement] = {}
    chain: VersionChanges[MovementKey, Movement] = VersionChanges()
    for customer in customers:
        own = facts_of.get(customer, [])
        positions = (arrived or {}).get(customer) or [max((f[2] for f in own), default=0)]
        steps = [(p, customer_movements([f for f in own if f[2] <= p])) for p in sorted(set(positions))]
        chain.extend(version_chain(current_of.get(customer, {}), steps))
        new.update(steps[-1][1])
    if chain.live_deleted:
        cur.executemany(
            "DELETE FROM rm_mrr_movements WHERE customer_id=%s AND currency=%s AND day=%s", chain.live_deleted
        )
    if chain.retired:
        cur.executemany(
            "INSERT INTO rm_mrr_movements_retired (customer_id, currency, day, kind, amount, mrr_before,"
            " mrr_after, known_from, known_to) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            [
                (*key, m.kind, m.amount, m.mrr_before, m.mrr_after, since, until)
                for key, m, since, until in chain.retired
            ],
        )
    if chain.live_added:
        cur.executemany(
            "INSERT INTO rm_mrr_movements (customer_id, currency, day, kind, amount, mrr_before,"
            " mrr_after, known_from) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)",
            [
                (*key, m.kind, m.amount, m.mrr_before, m.mrr_after, since)
                for key, m, since in chain.live_added
            ],
        )
    gone = [key for key, m in old.items() if new.get(key) != m]
    added = [(key, m) for key, m in new.items() if old.get(key) != m]
    deltas: dict[tuple[str, date], dict[str, int]] = defaultdict(lambda: dict.fromkeys(DAILY_COLUMNS, 0))
    for key in gone:
        deltas[(key[1], key[2])][old[key].kind] -= old[key].amount
        deltas[(key[1], key[2])]["paying"] -= _paying_change(old[key])
    for key, m in added:
        deltas[(key[1], key[2])][m.kind] += m.amount
        deltas[(key[1], key[2])]["paying"] += _paying_change(m)
    _add_to_daily(conn, deltas)


def customer_movements(facts: Sequence[tuple[Any, ...]]) -> dict[MovementKey, Movement]:
    """Movements of each customer and currency, from rows of
    (customer_id, subscription_id, position, currency, occurred_at, kind, amount, at, item_id)."""
    by_subscription: dict[UUID, list[SubscriptionFact]] = defaultdict(list)
    owner: dict[UUID, UUID] = {}
    currency_of: dict[UUID, str] = {}
    for customer_id, subscription_id, position, currency, occurred_at, kind, amount, at, item_id in facts:
        owner[subscription_id] = customer_id
        if currency:
            currency_of[subscription_id] = currency
        by_subscription[subscription_id].append(
            SubscriptionFact(position, cast(datetime, occurred_at), kind, amount, at, item_id)
        )
    grouped: dict[tuple[UUID, str], list[Any]] = defaultdict(list)
    for subscription_id, sub_facts in by_subscription.items():
        c = contribution(sub_facts)
        if c is not None and subscription_id in currency_of:
            grouped[(owner[subscription_id], currency_of[subscription_id])].append(c)
    result: dict[MovementKey, Movement] = {}
    for (customer_id, currency), contributions in grouped.items():
        for m in movements(mrr_series(contributions)):
            result[(customer_id, currency, m.day)] = m
    return result


def _add_to_daily(conn: Connection[Any], deltas: dict[tuple[str, date], dict[str, int]]) -> None:
    """Add the changes to the daily totals. Rows are locked in key order, so projectors (or
    replay workers) adding to the same days concurrently never deadlock."""
    changed = sorted(k for k, d in deltas.items() if any(d.values()))
    if not changed:
        return
    cur = conn.cursor()
    cur.executemany(
        "INSERT INTO rm_mrr_daily AS d (currency, day, new, expansion, contraction, churn, reactivation,"
        " paying) VALUES (%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (currency, day) DO UPDATE SET"
        " new = d.new + excluded.new, expansion = d.expansion + excluded.expansion,"
        " contraction = d.contraction + excluded.contraction, churn = d.churn + excluded.churn,"
        " reactivation = d.reactivation + excluded.reactivation, paying = d.paying + excluded.paying",
        [(cur_, day, *(deltas[(cur_, day)][k] for k in DAILY_COLUMNS)) for cur_, day in changed],
    )
    # A day whose movements all cancelled out has no row, however the log was batched.
    cur.executemany(
        "DELETE FROM rm_mrr_daily WHERE currency=%s AND day=%s AND new=0 AND expansion=0"
        " AND contraction=0 AND churn=0 AND reactivation=0 AND paying=0",
        changed,
    )


def days_whose_totals_differ(conn: Connection[Any]) -> list[tuple[str, date]]:
    """A consistency check for tests and benchmarks: the days whose totals in rm_mrr_daily are
    not the sum of the customers' movements (always none)."""
    rows = conn.cursor(row_factory=tuple_row).execute(
        "SELECT DISTINCT m.currency, m.day FROM (SELECT currency, day, kind, sum(amount) AS total"
        " FROM rm_mrr_movements GROUP BY 1, 2, 3) m JOIN rm_mrr_daily d USING (currency, day)"
        " WHERE m.total <> CASE m.kind WHEN 'new' THEN d.new"
        " WHEN 'expansion' THEN d.expansion WHEN 'contraction' THEN d.contraction"
        " WHEN 'churn' THEN d.churn ELSE d.reactivation END ORDER BY 1, 2"
    )
    return [(currency, day) for currency, day in rows.fetchall()]
