"""A billing day, beside raw PostgreSQL in the same run.

    .venv/bin/python bench/billing.py [--subscriptions 50000] [--usage 3] [--json FILE]

A history of N monthly subscriptions with usage (graduated prices), all renewing at the same
moment, is written first (customers, plan, subscriptions as events, usage through ingest). Then the
ledger's test clock is moved past that moment plus the grace period: the ledger renews every
subscription, drafts its invoice (fee in advance, usage in arrears, tax) and finalizes it with its
number, due date and balance, exactly as the clock does in production.

Figures printed:
- billing: subscriptions billed per second (invoices generated and finalized), the events written;
- raw PostgreSQL: the same number of rows, of the same size, inserted in transactions of the same
  size by plain INSERTs on one connection (synchronous commit on): the ceiling of a write path;
- the ratio of the two.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from application import commands as c
from application.ingestion import EventKey, IngestContext, RecordUsage
from domain.customer import Customer
from domain.subscription import Subscription
from infra.bootstrap import Container, bootstrap
from infra.eventstore import Envelope, current_envelope
from infra.settings import DatabaseAddress, Settings

PRICES = {
    "calls": {
        "model": "graduated",
        "tiers": [
            {"up_to": 1000, "unit_amount": "0.5"},
            {"up_to": 10000, "unit_amount": "0.2"},
            {"up_to": None, "unit_amount": "0.1"},
        ],
    }
}
BATCH = 500
CLOCK_BATCH = 200  # subscriptions the ledger's clock advances per transaction (Ledger.advance_due)


def build_history(container: Container, subscriptions: int, usage: int, start: datetime) -> None:
    """Customers and subscriptions saved in batches (the events the use cases would record, timers
    included); usage through the ingest use case, as clients send it."""
    ledger = container.ledger
    ctx = c.CommandContext(occurred_at=start, source="system", actor="bench")
    ledger.define_plan(c.DefinePlan("metered", "Metered", "EUR", 2000, "month", usage_prices=PRICES), ctx)
    plan = ledger.repository.get(ledger._plan("metered").id)
    assert container.ingestion is not None
    for first in range(0, subscriptions, BATCH):
        aggregates: list[Any] = []
        usage_items = []
        for n in range(first, min(first + BATCH, subscriptions)):
            customer = Customer.register(
                external_id=f"bench-{n}",
                email=f"c{n}@bench.io",
                name=f"Customer {n}",
                currency="EUR",
                tax_rate_bps=2000,
                metadata={},
                occurred_at=start,
            )
            sub = Subscription.start(
                customer_id=customer.id, plan=plan, quantity=1, trial_days=0, occurred_at=start
            )
            aggregates += [customer, sub]
            for k in range(usage):
                key = EventKey.of(0, "bench", f"{n}-{k}", "")
                at = start + timedelta(days=1 + k, seconds=n % 3600)
                usage_items.append(RecordUsage(key, customer.id, None, "calls", 100 + 37 * k, {}, at))
        envelope = Envelope(
            source="system",
            actor="bench",
            customers={a.id: a.owner_customer_id for a in aggregates},
            timers={a.id: a.next_due_at for a in aggregates if isinstance(a, Subscription)},
        )
        token = current_envelope.set(envelope)
        try:
            ledger.save(*aggregates)
        finally:
            current_envelope.reset(token)
        for chunk in range(0, len(usage_items), 1000):
            container.ingestion.ingest(
                usage_items[chunk : chunk + 1000], IngestContext(actor=None, correlation_id=None)
            )
        print(f"\r  history: {min(first + BATCH, subscriptions):,} / {subscriptions:,} subscriptions", end="")
    print()


def raw_inserts(conninfo: str, schema: str, rows: int, batch_rows: int, payload: bytes) -> float:
    with psycopg.connect(conninfo) as conn:
        conn.execute(f"CREATE TABLE {schema}.raw_bench (id uuid PRIMARY KEY, n bigint, body bytea)")
        conn.commit()
        start = time.perf_counter()
        with conn.cursor() as cur:
            for first in range(0, rows, batch_rows):
                cur.executemany(
                    f"INSERT INTO {schema}.raw_bench VALUES (%s, %s, %s)",
                    [(uuid.uuid4(), i, payload) for i in range(first, min(first + batch_rows, rows))],
                )
                conn.commit()
        return rows / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscriptions", type=int, default=50_000)
    parser.add_argument("--usage", type=int, default=3, help="usage records per subscription and period")
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--json", type=Path, help="write the figures as JSON to this file")
    args = parser.parse_args()

    schema = f"bench_billing_{uuid.uuid4().hex[:8]}"
    settings = Settings(
        database_url=args.database_url,
        database_schema=schema,
        allow_test_clock=True,
        _env_file=None,  # type: ignore[call-arg]
    )
    container = bootstrap(settings, args.database_url, run_projection=False)
    ledger = container.ledger
    try:
        start = ledger.now().replace(microsecond=0) + timedelta(hours=1)
        ledger.advance_test_clock(start, c.CommandContext(occurred_at=start))
        print(f"building {args.subscriptions:,} subscriptions with {args.usage} usage records each...")
        build_history(container, args.subscriptions, args.usage, start)

        boundary = start.replace(month=start.month % 12 + 1, year=start.year + (start.month == 12))
        head_before = ledger.store.head()
        began = time.perf_counter()
        ledger.advance_test_clock(boundary + timedelta(hours=2), c.CommandContext(occurred_at=start))
        seconds = time.perf_counter() - began
        events = ledger.store.head() - head_before
        with container.pool.connection() as conn:
            finalized: Any = conn.execute(
                "SELECT count(*) AS n FROM ledger_events WHERE event_type = 'Invoice.Finalized'"
                " AND notification_id > %s",
                (head_before,),
            ).fetchone()
            size: Any = conn.execute(
                "SELECT avg(length(state))::int AS bytes FROM ledger_events WHERE notification_id > %s",
                (head_before,),
            ).fetchone()
        invoices = int(finalized["n"])
        per_second = invoices / seconds
        rows_per_invoice = events / max(invoices, 1)
        # The clock bills `BATCH_SIZE` subscriptions per transaction: the raw inserts commit as
        # many rows at a time.
        raw = raw_inserts(
            DatabaseAddress(args.database_url).conninfo(),
            schema,
            rows=events,
            batch_rows=max(1, round(rows_per_invoice * CLOCK_BATCH)),
            payload=b"x" * int(size["bytes"] or 100),
        )
        raw_invoices_per_second = raw / rows_per_invoice
        figures = {
            "date": datetime.now(UTC).date().isoformat(),
            "subscriptions": args.subscriptions,
            "usage_records_per_subscription": args.usage,
            "invoices_finalized": invoices,
            "seconds": round(seconds, 2),
            "invoices_per_second": round(per_second, 1),
            "events_written": events,
            "raw_rows_per_second": round(raw, 1),
            "raw_invoices_per_second_same_rows": round(raw_invoices_per_second, 1),
            "ratio_to_raw": round(per_second / raw_invoices_per_second, 3),
        }
        print(
            f"billing: {invoices:,} invoices generated and finalized in {seconds:.1f} s"
            f" = {per_second:,.0f} invoices/s ({events:,} events)\n"
            f"raw PostgreSQL: {raw:,.0f} rows/s in transactions of"
            f" {round(rows_per_invoice * CLOCK_BATCH)} rows"
            f" = {raw_invoices_per_second:,.0f} 'invoices'/s\n"
            f"ratio to raw: {figures['ratio_to_raw']}"
        )
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
    finally:
        container.close()
        with psycopg.connect(DatabaseAddress(args.database_url).conninfo(), autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main()
