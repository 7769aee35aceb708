"""Verification throughput of the hash chain, beside raw PostgreSQL in the same run.

    .venv/bin/python bench/verify.py [--customers 1500] [--months 12] [--runs 3]
    .venv/bin/python bench/verify.py --copy-from postgresql://.../ledger_bench --copy-from-schema ledger

The history is simulated (the ledger's own commands), or copied from an existing event store
(read only: its rows are streamed into this run's own schema, nothing is written there).

Figures printed:
- seal events/s: sealing a history that has no seals (what `ledger verify` does first once);
- verify events/s: recomputing the chain over every sealed event and comparing it with the seals
  (`ledger verify` / `GET /v1/audit/verify` on a sealed log), median and best of --runs;
- raw PostgreSQL rows/s: the same rows, every column, read with COPY ... TO STDOUT (FORMAT
  BINARY) in position order and discarded: the cost of just getting them out of the server.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from application.simulation import Simulation
from infra.bootstrap import bootstrap
from infra.seals import seal, verify
from infra.settings import DatabaseAddress, Settings
from projections.runner import head_position

COLUMNS = (
    "notification_id, originator_id, originator_version, topic, state, event_type, occurred_at,"
    " recorded_at, customer_id, source, actor, correlation_id, causation_id, reason, schema_version"
)


def copy_history(source_url: str, source_schema: str, conninfo: str, schema: str) -> None:
    """Stream the source's events into this run's table (binary COPY out, binary COPY in)."""
    with (
        psycopg.connect(DatabaseAddress(source_url).conninfo()) as source,
        psycopg.connect(conninfo) as target,
    ):
        out_sql = f"COPY (SELECT {COLUMNS} FROM {source_schema}.ledger_events) TO STDOUT (FORMAT BINARY)"
        in_sql = f"COPY {schema}.ledger_events ({COLUMNS}) FROM STDIN (FORMAT BINARY)"
        with source.cursor().copy(out_sql) as out, target.cursor().copy(in_sql) as into:
            for block in out:
                into.write(block)
        target.execute(
            f"SELECT setval(pg_get_serial_sequence('{schema}.ledger_events', 'notification_id'),"
            f" (SELECT max(notification_id) FROM {schema}.ledger_events))"
        )
        target.execute(f"ANALYZE {schema}.ledger_events")
        target.commit()


def raw_copy_rows_per_second(conninfo: str, schema: str, rows: int) -> float:
    query = (
        f"COPY (SELECT {COLUMNS} FROM {schema}.ledger_events ORDER BY notification_id)"
        " TO STDOUT (FORMAT BINARY)"
    )
    with psycopg.connect(conninfo) as conn:
        start = time.perf_counter()
        with conn.cursor().copy(query) as copy:
            for _block in copy:
                pass
        return rows / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=1500)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--readers", type=int, default=2, help="connections fetching digests ahead")
    parser.add_argument(
        "--copy-from", help="URL of a database whose event store to copy instead of simulating"
    )
    parser.add_argument("--copy-from-schema", default="ledger")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "LEDGER_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/ledger_verify_bench"
        ),
    )
    args = parser.parse_args()
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    settings = Settings(database_url=args.database_url, database_schema=schema, _env_file=None)  # type: ignore[call-arg]
    container = bootstrap(settings, args.database_url, run_projection=False)
    conninfo = DatabaseAddress(args.database_url).conninfo()
    try:
        if args.copy_from:
            print(f"copying the event store of {args.copy_from_schema} ...", flush=True)
            copy_history(args.copy_from, args.copy_from_schema, conninfo, schema)
        else:
            print(f"writing a history of {args.customers} customers over {args.months} months...", flush=True)
            Simulation(container.ledger, customers=args.customers, months=args.months, seed=7).run()
        with container.pool.connection() as conn:
            row: dict[str, int] | None = conn.execute("SELECT count(*) AS n FROM ledger_events").fetchone()  # type: ignore[assignment]
        events = row["n"] if row else 0

        start = time.perf_counter()
        sealed = seal(container.pool, patience_seconds=30)
        seal_rate = sealed.events / (time.perf_counter() - start)
        assert sealed.position == head_position(container.pool), "the whole history is sealed"

        verify_rates, raw_rates = [], []
        for _ in range(args.runs):  # alternated, so both see the same machine load
            start = time.perf_counter()
            result = verify(container.pool, readers=args.readers)
            verify_rates.append(result.events_checked / (time.perf_counter() - start))
            assert result.ok and result.events_checked == events, result
            raw_rates.append(raw_copy_rows_per_second(conninfo, schema, events))
    finally:
        container.close()
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")

    verify_rate, raw = statistics.median(verify_rates), statistics.median(raw_rates)
    print(f"history: {events} events")
    print(
        f"raw PostgreSQL COPY TO STDOUT (binary), every column, rows/s: median {raw:.0f},"
        f" best {max(raw_rates):.0f}"
    )
    print(f"seal (unsealed history) events/s : {seal_rate:10.0f}   ({seal_rate / raw:.2f} x raw)")
    print(
        f"verify events/s ({args.readers} reader(s)): median {verify_rate:.0f}, best {max(verify_rates):.0f}"
        f"   ({verify_rate / raw:.2f} x raw)"
    )


if __name__ == "__main__":
    main()
