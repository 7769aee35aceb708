"""Projection throughput and lag, beside raw PostgreSQL in the same run.

    .venv/bin/python bench/projection.py [--customers 600] [--months 12] [--lag-seconds 20] \
        [--lag-rates 1000,10000] [--history-from SCHEMA] [--json FILE]

Figures printed:
- relay events/s: a history already in the store published to Kafka (the embedded broker unless
  LEDGER_KAFKA_BOOTSTRAP_SERVERS is set);
- projector events/s: one projector process consuming that topic into the read models;
- replay events/s: `ledger replay` of the same history straight from the store;
- lag p50 / p99: from commit to visible in the read models (what `min_position` waits for) while
  a writer appends usage measurements at each rate of --lag-rates (events/s, in batches every
  10 ms, as an ingest client would);
- raw PostgreSQL: pipelined single-row INSERTs on one connection (rows/s), the ceiling of a
  projector that writes one row per event.

--history-from SCHEMA copies the events of an earlier history (a schema of the same database,
for example one `ledger simulate` filled) instead of simulating one: large histories are
written once and measured many times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import psycopg
from psycopg.rows import tuple_row

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from application import commands as c
from application.ingestion import EventKey, IngestContext, Ingestion, RecordUsage
from application.simulation import Simulation
from infra import kafka as k
from infra.bootstrap import CORE_PROJECTION, Container, bootstrap
from infra.relay import BackgroundRelay, Relay
from infra.settings import DatabaseAddress, Settings
from projections.checkpoints import applied_position
from projections.kafka_projector import BackgroundKafkaProjection, KafkaProjector
from projections.replay import replay
from projections.runner import head_position


def raw_pipelined_inserts(conninfo: str, schema: str, n: int) -> float:
    with psycopg.connect(conninfo) as conn:
        conn.execute(f"CREATE TABLE {schema}.raw_bench (id uuid PRIMARY KEY, n bigint, body jsonb)")
        conn.commit()
        start = time.perf_counter()
        with conn.pipeline(), conn.cursor() as cur:
            for i in range(n):
                cur.execute(
                    f"INSERT INTO {schema}.raw_bench VALUES (%s, %s, %s)", (uuid.uuid4(), i, '{"a": 1}')
                )
        conn.commit()
        return n / (time.perf_counter() - start)


def wait_until_applied(container: Container, target: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while applied_position(container.pool, CORE_PROJECTION) < target:
        if time.monotonic() > deadline:
            raise SystemExit("projection did not catch up")
        time.sleep(0.01)


def measure_lag(container: Container, seconds: float, rate: float, customers: list[UUID]) -> list[float]:
    """A writer appends usage measurements at ~rate events/s (a batch every 10 ms); a watcher
    notes when each commit is visible in the read models."""
    commits: list[tuple[int, int, float]] = []  # (position, events, committed at)
    lock = threading.Lock()
    stop = threading.Event()
    ingestion = Ingestion(container.ledger, auto_create_customers=False, default_currency="EUR")
    tick = 0.01
    per_tick = max(1, round(rate * tick))
    run = uuid.uuid4().hex[:8]

    def writer() -> None:
        n = 0
        next_at = time.perf_counter()
        while not stop.is_set():
            batch = []
            for _ in range(per_tick):
                key = EventKey.of(n, "bench", f"lag-{run}-{n}", f"h{n}")
                batch.append(RecordUsage(key, customers[n % len(customers)], None, "api_calls", 1, {}, None))
                n += 1
            results = ingestion.ingest(batch, IngestContext(actor="bench", correlation_id=None))
            committed = time.perf_counter()
            top = max(r.position or 0 for r in results)
            with lock:
                commits.append((top, len(batch), committed))
            container.wake_projection()
            next_at += tick
            time.sleep(max(0.0, next_at - time.perf_counter()))

    thread = threading.Thread(target=writer)
    thread.start()
    visible: dict[int, float] = {}
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        applied = applied_position(container.pool, CORE_PROJECTION)
        now = time.perf_counter()
        with lock:
            for position, _, _ in commits:
                if position <= applied and position not in visible:
                    visible[position] = now
        time.sleep(0.002)
    stop.set()
    thread.join()
    # Each event of a batch waited as long as its batch did.
    return [visible[p] - at for p, events, at in commits if p in visible for _ in range(events)]


def copy_history(conninfo: str, source: str, schema: str) -> None:
    with psycopg.connect(conninfo) as conn:
        conn.execute(f"INSERT INTO {schema}.ledger_events SELECT * FROM {source}.ledger_events")
        conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{schema}.ledger_events', 'notification_id'),"
            f" (SELECT max(notification_id) FROM {schema}.ledger_events))"
        )


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=600)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--lag-seconds", type=float, default=20)
    parser.add_argument("--lag-rates", default="1000,10000", help="events/s, comma-separated")
    parser.add_argument("--replay-workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--replay-runs", type=int, default=3)
    parser.add_argument("--history-from", help="copy the events of this schema instead of simulating")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("LEDGER_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/ledger_bench"),
    )
    args = parser.parse_args()
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    settings = Settings(database_url=args.database_url, database_schema=schema, _env_file=None)  # type: ignore[call-arg]
    servers = os.environ.get("LEDGER_KAFKA_BOOTSTRAP_SERVERS")
    broker = None
    if not servers:
        from infra.embedded import EmbeddedKafka

        broker = EmbeddedKafka()
        servers = broker.start()
    container = bootstrap(settings, args.database_url, run_projection=False)
    conninfo = DatabaseAddress(args.database_url).conninfo()
    topic = k.topic_name(f"{schema}.")
    try:
        if args.history_from:
            print(f"copying the history of schema {args.history_from}...", flush=True)
            copy_history(conninfo, args.history_from, schema)
        else:
            print(f"writing a history of {args.customers} customers over {args.months} months...", flush=True)
            Simulation(container.ledger, customers=args.customers, months=args.months, seed=7).run()
        head = head_position(container.pool)
        print(f"history: {head} events; relaying it to Kafka...", flush=True)

        pool = container.pool
        relay_core = Relay(pool, servers, topic)
        start = time.perf_counter()
        while relay_core.run_once():
            pass
        relay_rate = head / (time.perf_counter() - start)

        # The projector alone, on a topic that already holds the history, timed from the moment
        # it owns its partitions (a consumer group join takes seconds; that is not throughput).
        assigned_at: list[float] = []
        projection = BackgroundKafkaProjection(
            lambda: KafkaProjector(
                pool, servers, topic, on_assigned=lambda parts: assigned_at.append(time.perf_counter())
            )
        )
        projection.start()
        wait_until_applied(container, head)
        projector_rate = head / (time.perf_counter() - assigned_at[0])
        print(f"projector: {projector_rate:.0f} events/s", flush=True)
        with pool.connection() as conn:
            customers = [
                r[0]
                for r in conn.cursor(row_factory=tuple_row)
                .execute("SELECT id FROM rm_customers ORDER BY id")
                .fetchall()
            ]
        if not customers:
            container.ledger.register_customer(
                c.RegisterCustomer(external_id="lag", email="lag@x.io", currency="EUR"),
                c.CommandContext(occurred_at=datetime.now(UTC), actor="bench"),
            )
            with pool.connection() as conn:
                customers = [
                    r[0]
                    for r in conn.cursor(row_factory=tuple_row)
                    .execute("SELECT id FROM rm_customers")
                    .fetchall()
                ]

        relay = BackgroundRelay(relay_core)
        relay.start()

        container.relay, container.projection = relay, projection
        lags: dict[int, list[float]] = {}
        for rate in (int(r) for r in args.lag_rates.split(",") if r):
            lags[rate] = measure_lag(container, args.lag_seconds, rate, customers)
            print(f"lag at {rate} events/s: p99 {percentile(lags[rate], 0.99):.0f} ms", flush=True)
        relay.stop()  # replay runs alone, as `ledger replay` would
        projection.stop()
        container.relay = container.projection = None

        replay_rates = []
        for _ in range(args.replay_runs):  # a shared 2-core machine is noisy: median and best
            start = time.perf_counter()
            replayed = replay(conninfo, schema, CORE_PROJECTION, workers=args.replay_workers)
            replay_rates.append(replayed / (time.perf_counter() - start))
        replay_rate = statistics.median(replay_rates)

        raw = raw_pipelined_inserts(conninfo, schema, 50_000)
    finally:
        container.close()
        if broker:
            broker.stop()
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")

    print(f"history: {head} events")
    print(f"raw PostgreSQL pipelined single-row inserts/s: {raw:10.0f}")
    print(f"relay, store -> Kafka events/s           : {relay_rate:10.0f}   ({relay_rate / raw:.2f} x raw)")
    print(
        f"projector, Kafka -> read models events/s : {projector_rate:10.0f}"
        f"   ({projector_rate / raw:.2f} x raw)"
    )
    print(
        f"replay, store -> read models events/s ({args.replay_workers} worker(s)): median {replay_rate:.0f}"
        f", best {max(replay_rates):.0f}   ({replay_rate / raw:.2f} x raw)"
    )
    lag_figures = {}
    for rate, samples in lags.items():
        figures = {
            "events": len(samples),
            "p50_ms": percentile(samples, 0.50),
            "p99_ms": percentile(samples, 0.99),
            "mean_ms": statistics.mean(samples) * 1000 if samples else None,
        }
        lag_figures[str(rate)] = figures
        print(
            f"lag commit -> visible at ~{rate:,} events/s ({len(samples)} events):"
            f" p50 {figures['p50_ms']:.0f} ms, p99 {figures['p99_ms']:.0f} ms"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "machine": f"{os.cpu_count()} cores",
                    "history_events": head,
                    "history": args.history_from or {"customers": args.customers, "months": args.months},
                    "raw_pipelined_inserts_per_s": raw,
                    "relay_events_per_s": relay_rate,
                    "projector_events_per_s": projector_rate,
                    "projector_ratio_to_raw": projector_rate / raw,
                    "replay_workers": args.replay_workers,
                    "replay_events_per_s_median": replay_rate,
                    "replay_events_per_s_best": max(replay_rates),
                    "replay_ratio_to_raw": replay_rate / raw,
                    "lag": lag_figures,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
