"""Projection throughput and lag, beside raw PostgreSQL in the same run.

    .venv/bin/python bench/projection.py [--customers 600] [--months 12] [--lag-seconds 20]

Figures printed:
- relay events/s: a history already in the store published to Kafka (the embedded broker unless
  LEDGER_KAFKA_BOOTSTRAP_SERVERS is set);
- projector events/s: one projector process consuming that topic into the read models;
- replay events/s: `ledger replay` of the same history straight from the store;
- lag p50 / p99: from commit to visible in the read models (what `min_position` waits for) while
  writers append about 1,000 events/s;
- raw PostgreSQL: pipelined single-row INSERTs on one connection (rows/s), the ceiling of a
  projector that writes one row per event.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from application import commands as c
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


def measure_lag(container: Container, seconds: float, rate: float) -> list[float]:
    """Writers append commands at ~rate events/s; a watcher notes when each commit is visible."""
    commits: list[tuple[int, float]] = []
    lock = threading.Lock()
    stop = threading.Event()
    ctx = c.CommandContext(occurred_at=datetime.now(UTC), actor="bench")

    def writer(offset: int, every: float) -> None:
        i = 0
        next_at = time.perf_counter()
        while not stop.is_set():
            outcome = container.ledger.register_customer(
                c.RegisterCustomer(external_id=f"lag-{offset}-{i}", email=f"l{i}@x.io", currency="EUR"), ctx
            )
            with lock:
                commits.append((outcome.position, time.perf_counter()))
            container.wake_projection()
            i += 1
            next_at += every
            time.sleep(max(0.0, next_at - time.perf_counter()))

    writers = [threading.Thread(target=writer, args=(w, 2 / rate)) for w in range(2)]
    for t in writers:
        t.start()
    visible: dict[int, float] = {}
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        applied = applied_position(container.pool, CORE_PROJECTION)
        now = time.perf_counter()
        with lock:
            for position, _ in commits:
                if position <= applied and position not in visible:
                    visible[position] = now
        time.sleep(0.002)
    stop.set()
    for t in writers:
        t.join()
    return [visible[p] - at for p, at in commits if p in visible]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=600)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--lag-seconds", type=float, default=20)
    parser.add_argument("--replay-workers", type=int, default=os.cpu_count() or 1)
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
        print(f"writing a history of {args.customers} customers over {args.months} months...", flush=True)
        Simulation(container.ledger, customers=args.customers, months=args.months, seed=7).run()
        head = head_position(container.pool)

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

        relay = BackgroundRelay(relay_core)
        relay.start()

        container.relay, container.projection = relay, projection
        lags = sorted(measure_lag(container, args.lag_seconds, rate=1000))
        relay.stop()  # replay runs alone, as `ledger replay` would
        projection.stop()
        container.relay = container.projection = None

        replay_rates = []
        for _ in range(3):  # a shared 2-core machine is noisy: three runs, median and best
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

    def pct(q: float) -> float:
        return lags[min(len(lags) - 1, int(q * len(lags)))] * 1000

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
    print(
        f"lag commit -> visible at ~1,000 events/s ({len(lags)} writes): "
        f"p50 {pct(0.50):.0f} ms, p99 {pct(0.99):.0f} ms, mean {statistics.mean(lags) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
