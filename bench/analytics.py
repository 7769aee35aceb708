"""Analytics: Parquet export throughput, loading into DuckDB, and the cohort retention query,
beside raw PostgreSQL in the same run.

    .venv/bin/python bench/analytics.py --database-url postgresql://postgres@127.0.0.1/DB [--schema ledger]
    .venv/bin/python bench/analytics.py --customers 2000 --months 24     # builds a history first

With `--database-url` and an existing `--schema`, the history there is only read (its read
models should be up to date: `ledger replay` after `ledger simulate`). Without a history in
that schema, one is simulated into a new schema (dropped afterwards) and its read models built
by replay.

Figures printed:
- export events/s: `ledger export --parquet` of the log, first in full up to 90% of the log,
  then incrementally (the last 10%: what a second export writes), each with the read models;
- load: the whole log and read models into DuckDB through Arrow straight from PostgreSQL (what
  the API and `ledger sql` do), and from the Parquet export (`ledger sql --parquet`);
- the README's cohort retention query in DuckDB: p50 and best of several runs (target < 1 s);
- raw PostgreSQL: a binary COPY of the same event columns to nowhere (events/s: the ceiling
  of any export), and the same cohort query written for PostgreSQL, run there (p50).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from application.simulation import Simulation
from infra.analytics.engine import AnalyticsEngine
from infra.analytics.export import ParquetSource, export_parquet
from infra.analytics.source import EVENT_COLUMNS, EVENTS_TABLE, PostgresSource, Snapshot
from infra.bootstrap import CORE_PROJECTION, bootstrap
from infra.settings import DatabaseAddress, Settings
from projections.replay import replay

README = Path(__file__).resolve().parents[1] / "README.md"

POSTGRES_COHORT_QUERY = """
WITH paying AS (
    SELECT customer_id, coalesce(trial_end, started_at) AS paid_from, ended_at AS paid_until
    FROM rm_subscriptions
    WHERE ended_at IS NULL OR ended_at > coalesce(trial_end, started_at)
), cohorts AS (
    SELECT customer_id, date_trunc('month', min(paid_from)) AS cohort FROM paying GROUP BY customer_id
), months AS (
    SELECT generate_series((SELECT min(cohort) FROM cohorts),
        date_trunc('month', (SELECT max(occurred_at) FROM ledger_events)), interval '1 month') AS month
), retention AS (
    SELECT c.cohort,
           (extract(year FROM age(m.month, c.cohort)) * 12 + extract(month FROM age(m.month, c.cohort)))::int
               AS age,
           count(DISTINCT c.customer_id) AS customers, count(DISTINCT p.customer_id) AS paying
    FROM cohorts c
    JOIN months m ON m.month >= c.cohort
    LEFT JOIN paying p ON p.customer_id = c.customer_id
        AND p.paid_from < m.month + interval '1 month'
        AND (p.paid_until IS NULL OR p.paid_until >= m.month + interval '1 month')
    GROUP BY c.cohort, m.month
)
SELECT to_char(cohort, 'YYYY-MM') AS cohort, max(customers) AS customers,
       round(100.0 * max(paying) FILTER (WHERE age = 0) / max(customers), 1) AS m0,
       round(100.0 * max(paying) FILTER (WHERE age = 1) / max(customers), 1) AS m1,
       round(100.0 * max(paying) FILTER (WHERE age = 2) / max(customers), 1) AS m2,
       round(100.0 * max(paying) FILTER (WHERE age = 3) / max(customers), 1) AS m3,
       round(100.0 * max(paying) FILTER (WHERE age = 6) / max(customers), 1) AS m6,
       round(100.0 * max(paying) FILTER (WHERE age = 12) / max(customers), 1) AS m12
FROM retention
GROUP BY cohort
ORDER BY cohort
"""


def readme_cohort_query() -> str:
    section = README.read_text().split("\n## Analytics\n", 1)[1]
    match = re.search(r"\*\*Monthly cohort retention\*\*[^`]*?```sql\n(.*?)```", section, flags=re.S)
    if match is None:
        raise SystemExit("the README's cohort retention query was not found")
    return match.group(1)


class UpTo:
    """A source that stops at a position, so one history gives a full and an incremental export."""

    def __init__(self, source: PostgresSource, position: int) -> None:
        self.source, self.position = source, position

    def head(self) -> int:
        return min(self.source.head(), self.position)

    @contextmanager
    def read(self, events_after: int | None) -> Iterator[Snapshot]:
        with self.source.read(events_after) as snapshot:
            events = snapshot.events
            if events is not None:
                upto = self.position
                batches = events.to_batches() if isinstance(events, pa.Table) else events
                events = pa.RecordBatchReader.from_batches(
                    events.schema,
                    (batch.filter(pc.less_equal(batch["position"], upto)) for batch in batches),
                )
            yield replace(snapshot, position=min(snapshot.position, self.position), events=events)


def timed_runs(run: object, times: int) -> list[float]:
    durations = []
    for _ in range(times):
        start = time.perf_counter()
        run()  # type: ignore[operator]
        durations.append(time.perf_counter() - start)
    return durations


def raw_copy_events(conninfo: str, schema: str) -> tuple[int, float]:
    """Binary COPY of the exported event columns, received and thrown away: (events, seconds)."""
    with psycopg.connect(conninfo, options=f"-c search_path={schema}") as conn, conn.cursor() as cur:
        row = cur.execute(f"SELECT count(*) FROM {EVENTS_TABLE}").fetchone()
        events = int(row[0]) if row else 0
        start = time.perf_counter()
        with cur.copy(f"COPY (SELECT {EVENT_COLUMNS} FROM {EVENTS_TABLE}) TO STDOUT (FORMAT BINARY)") as copy:
            for _block in copy:  # data blocks as they arrive, not parsed: the wire's ceiling
                pass
        return events, time.perf_counter() - start


def has_history(conninfo: str, schema: str) -> bool:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{schema}.{EVENTS_TABLE}",)).fetchone()
        return bool(row and row[0])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("LEDGER_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/ledger_bench"),
    )
    parser.add_argument("--schema", default="ledger", help="schema of an existing history")
    parser.add_argument("--customers", type=int, default=500, help="when building a history")
    parser.add_argument("--months", type=int, default=24, help="when building a history")
    parser.add_argument("--runs", type=int, default=7, help="runs of each query")
    args = parser.parse_args()

    conninfo = DatabaseAddress(args.database_url).conninfo()
    schema, built = args.schema, False
    if not (has_history(conninfo, schema) if _database_exists(args.database_url) else False):
        schema, built = f"bench_{uuid.uuid4().hex[:8]}", True
        settings = Settings(database_url=args.database_url, database_schema=schema, _env_file=None)  # type: ignore[call-arg]
        container = bootstrap(settings, args.database_url, run_projection=False)
        print(f"writing a history of {args.customers} customers over {args.months} months...", flush=True)
        Simulation(container.ledger, customers=args.customers, months=args.months, seed=7).run()
        container.close()
        replay(conninfo, schema, CORE_PROJECTION)
    try:
        run(conninfo, schema, args.runs)
    finally:
        if built:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _database_exists(url: str) -> bool:
    try:
        with psycopg.connect(DatabaseAddress(url).conninfo(), connect_timeout=5):
            return True
    except psycopg.OperationalError:
        return False


def run(conninfo: str, schema: str, runs: int) -> None:
    source = PostgresSource(conninfo, schema)
    head = source.head()
    with source.read(events_after=None) as snapshot:
        read_models_position = snapshot.read_models_position
    if read_models_position < head:
        print(
            f"warning: the read models have applied {read_models_position} of {head} events (ledger replay)"
        )

    with tempfile.TemporaryDirectory(prefix="ledger-export-") as lake_dir:
        lake = Path(lake_dir)
        cut = head * 9 // 10
        start = time.perf_counter()
        full = export_parquet(UpTo(source, cut), lake)
        full_seconds = time.perf_counter() - start
        start = time.perf_counter()
        incremental = export_parquet(source, lake)
        incremental_seconds = time.perf_counter() - start
        lake_bytes = sum(p.stat().st_size for p in lake.rglob("*.parquet"))

        engine = AnalyticsEngine(source)
        start = time.perf_counter()
        engine.refresh()
        arrow_load = time.perf_counter() - start

        parquet_engine = AnalyticsEngine(ParquetSource(lake))
        start = time.perf_counter()
        parquet_engine.refresh()
        parquet_load = time.perf_counter() - start
        parquet_engine.close()

    cohort_sql = readme_cohort_query()
    answers: list[int] = []

    def duckdb_cohorts() -> None:
        answer = engine.query(cohort_sql, limit=10_000, timeout_seconds=60)
        answers.append(answer.result.table.num_rows)

    duckdb_cohorts()  # warm: the first run pays for nothing else (everything is loaded)
    duck = timed_runs(duckdb_cohorts, runs)
    engine.close()

    with psycopg.connect(conninfo, options=f"-c search_path={schema} -c TimeZone=UTC") as conn:
        pg_rows = len(conn.execute(POSTGRES_COHORT_QUERY).fetchall())  # warm the cache
        pg = timed_runs(lambda: conn.execute(POSTGRES_COHORT_QUERY).fetchall(), max(3, runs // 2))
    copied, copy_seconds = raw_copy_events(conninfo, schema)
    raw_rate = copied / copy_seconds

    full_rate = full.events_written / full_seconds
    incremental_rate = incremental.events_written / incremental_seconds
    duck_p50, pg_p50 = statistics.median(duck), statistics.median(pg)
    print(f"history: {head} events, schema {schema}; Parquet export {lake_bytes / 1e6:.1f} MB")
    print(f"raw PostgreSQL: binary COPY of the event columns    {raw_rate:10.0f} events/s")
    print(
        f"export, full ({full.events_written} events)           {full_rate:10.0f} events/s"
        f"  ({full_rate / raw_rate:.2f} x raw; {full_seconds:.2f} s; {full.read_model_rows} read-model rows)"
    )
    print(
        f"export, incremental ({incremental.events_written} new)    {incremental_rate:10.0f} events/s"
        f"  ({incremental_seconds:.2f} s, with the read models again)"
    )
    print(f"load into DuckDB, Arrow from PostgreSQL  {arrow_load:6.2f} s  ({head / arrow_load:.0f} events/s)")
    print(
        f"load into DuckDB, Parquet export         {parquet_load:6.2f} s ({head / parquet_load:.0f} events/s)"
    )
    print(
        f"cohort retention, DuckDB ({answers[-1]} cohorts, {runs} runs): p50 {duck_p50 * 1000:.0f} ms,"
        f" best {min(duck) * 1000:.0f} ms (target < 1000 ms)"
    )
    print(
        f"cohort retention, PostgreSQL ({pg_rows} cohorts, {len(pg)} runs): p50 {pg_p50 * 1000:.0f} ms"
        f"  (PostgreSQL / DuckDB = {pg_p50 / duck_p50:.2f})"
    )


if __name__ == "__main__":
    main()
