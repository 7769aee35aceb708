"""`ledger simulate` throughput, beside raw PostgreSQL writing the same rows in the same run.

    .venv/bin/python bench/simulate.py [--customers 50000] [--months 24] [--seed 1] [--workers N]
                                       [--database-url URL] [--keep] [--json FILE]

A fresh schema receives the simulated history (`Simulation.run`, as `ledger simulate` runs it:
the use cases, appends written behind in large transactions, worker processes simulating chunks
of customers by default for a large history). Figures printed:

- simulate: events written per second, wall clock from the first command to the last commit;
  the CPU seconds of the writing process and of its workers;
- raw PostgreSQL: the first `--raw-rows` events of that history, read back and written again by
  binary COPY into a copy of the events table (same columns, defaults and indexes), committed
  every `FLUSH_EVENTS` rows as the simulation commits: the ceiling of writing these rows;
- the ratio of the two.

The machine's load average when the run started is printed too: on a shared machine the figures
move with it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from application.ledger import Ledger
from application.simulation import FLUSH_EVENTS, Simulation, default_workers
from infra import heap
from infra.database import ensure_database, ensure_schema, event_store_env
from infra.eventstore import COPY_TYPES
from infra.settings import DatabaseAddress

COLUMNS = (
    "originator_id, originator_version, topic, state, event_type, occurred_at, customer_id, source,"
    " actor, correlation_id, causation_id, reason, schema_version"
)


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def raw_copy_rate(address: DatabaseAddress, schema: str, rows: int) -> tuple[float, int]:
    """Rows/s of binary COPY of the history's first `rows` events into a copy of the events table."""
    table = sql.Identifier(schema, "raw_events")
    events = sql.Identifier(schema, "ledger_events")
    with psycopg.connect(address.conninfo()) as conn:
        conn.execute(
            sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING INDEXES)").format(table, events)
        )
        conn.commit()
        sample = conn.execute(
            sql.SQL("SELECT {} FROM {} ORDER BY notification_id LIMIT %s").format(sql.SQL(COLUMNS), events),
            (rows,),
        ).fetchall()
        conn.commit()
        copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(table, sql.SQL(COLUMNS))
        start = time.perf_counter()
        for first in range(0, len(sample), FLUSH_EVENTS):
            with conn.cursor() as cur, cur.copy(copy_sql) as copy:
                copy.set_types(COPY_TYPES)
                for row in sample[first : first + FLUSH_EVENTS]:
                    copy.write_row(row)
            conn.commit()
        seconds = time.perf_counter() - start
    return len(sample) / seconds, len(sample)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--workers", type=int, help="worker processes (default: one per core for a large history)"
    )
    parser.add_argument("--raw-rows", type=int, default=500_000, help="rows of the raw reference")
    parser.add_argument("--until", default="2025-06-01", help="end of the history (UTC day)")
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--keep", action="store_true", help="keep the schema (its name is printed)")
    parser.add_argument("--json", type=Path, help="write the figures as JSON to this file")
    args = parser.parse_args()

    address = DatabaseAddress(args.database_url)
    ensure_database(address)
    schema = f"bench_simulate_{uuid.uuid4().hex[:8]}"
    ensure_schema(address, schema)
    ledger = Ledger(env=event_store_env(address, schema, 4))
    workers = default_workers(args.customers) if args.workers is None else args.workers
    load = os.getloadavg()[0]
    try:
        simulation = Simulation(
            ledger,
            customers=args.customers,
            months=args.months,
            seed=args.seed,
            until=datetime.fromisoformat(args.until).replace(tzinfo=UTC),
            workers=workers,
        )
        heap.settle()  # as `ledger simulate` does once built
        print(f"simulating {args.customers:,} customers over {args.months} months...")
        cpu, children, began = time.process_time(), children_cpu_seconds(), time.perf_counter()
        stats = simulation.run()
        seconds = time.perf_counter() - began
        cpu, children = time.process_time() - cpu, children_cpu_seconds() - children
        events = ledger.store.head()
        per_second = events / seconds
        raw, raw_rows = raw_copy_rate(address, schema, min(args.raw_rows, events))
        figures: dict[str, Any] = {
            "date": datetime.now(UTC).date().isoformat(),
            "cores": os.cpu_count(),
            "load_average_at_start": round(load, 2),
            "customers": args.customers,
            "months": args.months,
            "seed": args.seed,
            "workers": simulation.workers_used,
            "events": events,
            "commands": stats.commands,
            "seconds": round(seconds, 2),
            "events_per_second": round(per_second, 1),
            "writer_cpu_seconds": round(cpu, 2),
            "workers_cpu_seconds": round(children, 2),
            "raw_copy_rows": raw_rows,
            "raw_copy_rows_per_second": round(raw, 1),
            "ratio_to_raw": round(per_second / raw, 3),
        }
        print(
            f"simulate: {events:,} events ({stats.commands:,} commands) in {seconds:.1f} s"
            f" = {per_second:,.0f} events/s ({simulation.workers_used} workers; writer {cpu:.1f} s CPU,"
            f" workers {children:.1f} s CPU;"
            f" load average {load:.1f} on {os.cpu_count()} cores at start)\n"
            f"raw PostgreSQL: {raw:,.0f} rows/s (binary COPY of {raw_rows:,} of these events,"
            f" a commit every {FLUSH_EVENTS:,})\n"
            f"ratio to raw: {figures['ratio_to_raw']}"
        )
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
    finally:
        ledger.close()
        if args.keep:
            print(f"history kept in schema {schema}")
        else:
            with psycopg.connect(address.conninfo(), autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


if __name__ == "__main__":
    main()
