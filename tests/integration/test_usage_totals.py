"""Usage totals added record by record (a batch that only brings new records adds them to their
periods) equal the totals recomputed from all the records: sum, max, the last by occurred_at
(ties broken by log position), counts, for records in and outside a subscription's periods and
records arriving late for an earlier period."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from application import commands as c
from application.ingestion import EventKey, IngestContext, RecordUsage
from infra.bootstrap import CORE_PROJECTION, Container
from projections.runner import head_position, wait_for_position
from projections.usage import _settle_customers

BASE = datetime(2025, 1, 1, tzinfo=UTC)
PERIODS = "SELECT * FROM rm_usage_periods ORDER BY customer_id, metric, period_start, grp"


def _ctx(day: int) -> c.CommandContext:
    return c.CommandContext(occurred_at=BASE + timedelta(days=day, hours=7))


def test_totals_added_record_by_record_equal_the_totals_recomputed_from_all_records(
    container: Container,
) -> None:
    ledger = container.ledger
    assert container.ingestion is not None
    ledger.define_plan(
        c.DefinePlan(
            "metered",
            "Metered",
            "EUR",
            1000,
            "month",
            quotas={"calls": {"limit": 50, "aggregation": "last", "enforcement": "soft"}},
        ),
        _ctx(0),
    )
    tag = uuid.uuid4().hex[:8]
    subscribed, unsubscribed = (
        ledger.register_customer(c.RegisterCustomer(f"{tag}-{i}", f"{i}@x.test", "EUR"), _ctx(0)).resource_id
        for i in range(2)
    )
    ledger.start_subscription(c.StartSubscription(subscribed, "metered", 1, trial_days=0), _ctx(10))
    # (customer, metric, day, value): one command each, so most batches bring only new records.
    # Equal moments with other values (the later one is the last), a late record for an
    # earlier period, records before the subscription began (calendar months), a second metric.
    records = [
        (subscribed, "calls", 12, 5),
        (subscribed, "calls", 12, 3),
        (subscribed, "calls", 45, 9),
        (subscribed, "calls", 12, 4),
        (subscribed, "calls", 2, 7),
        (subscribed, "storage", 45, 1),
        (subscribed, "calls", 45, 2),
        (unsubscribed, "calls", 3, 8),
        (unsubscribed, "calls", 3, 1),
        (unsubscribed, "calls", 40, 6),
        (subscribed, "calls", 70, 11),
        (subscribed, "calls", 13, 1),
    ]
    context = IngestContext(actor=None, correlation_id=None)
    for index, (customer, metric, day, value) in enumerate(records):
        key = EventKey.of(0, "tests", f"{tag}-{index}", "")
        at = BASE + timedelta(days=day, hours=1)
        container.ingestion.ingest([RecordUsage(key, customer, None, metric, value, {}, at)], context)
        container.wake_projection()
        assert wait_for_position(container.pool, CORE_PROJECTION, head_position(container.pool), 30)

    with container.pool.connection() as conn, conn.transaction():
        added: list[Any] = conn.execute(PERIODS).fetchall()
        _settle_customers(conn.cursor(row_factory=tuple_row), [subscribed, unsubscribed])
        recomputed: list[Any] = conn.execute(PERIODS).fetchall()
        raise psycopg.Rollback()  # only compared
    assert len(added) >= 5
    assert added == recomputed
