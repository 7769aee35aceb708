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
  10 ms, as an ingest client would; one that fell behind writes what is due in its next batch),
  with the rate the writer reached. The writer and the
  watcher run in processes of their own, so that the relay and the projector (threads of this
  process, as in `ledger up`) share their interpreter with nothing else; the writer wakes the
  relay as the API's worker processes do, with a PostgreSQL notification;
- raw PostgreSQL: pipelined single-row INSERTs on one connection (rows/s), the ceiling of a
  projector that writes one row per event.

--history-from SCHEMA copies the events of an earlier history (a schema of the same database,
for example one `ledger simulate` filled) instead of simulating one: large histories are
written once and measured many times.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
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


LAG_DRAIN_SECONDS = 30.0  # after the writer stops, how long its last commits may take to show


def _ready_then_wait(ready: Any, go: Any) -> float:
    """Tell the parent this process is ready; answers the moment (time.monotonic, the same
    clock in every process of the machine) the parent says to start."""
    ready.put(os.getpid())
    started: float = go.get()
    return started


def lag_writer(
    database_url: str, schema: str, customers: list[UUID], rate: float, seconds: float, ready: Any, go: Any,
    out: Any,
) -> None:  # fmt: skip
    """A process of its own (its own interpreter and GIL, as an ingest client or an API worker
    would be): appends usage measurements at ~rate events/s, a batch every 10 ms, and tells the
    relay's process of each commit as `ledger up`'s API workers do (a PostgreSQL notification,
    `infra/wakeups.py`). Sends back (position, events, committed at) of every commit."""
    settings = Settings(
        database_url=database_url, database_schema=schema, database_pool_size=2, _env_file=None
    )  # type: ignore[call-arg]
    container = bootstrap(settings, database_url, run_projection=False, notify_writes=True)
    ingestion = Ingestion(container.ledger, auto_create_customers=False, default_currency="EUR")
    tick = 0.01
    run = uuid.uuid4().hex[:8]
    commits: list[tuple[int, int, float]] = []
    try:
        started = _ready_then_wait(ready, go)
        time.sleep(max(0.0, started - time.monotonic()))
        n = 0
        next_at = started
        while time.monotonic() < started + seconds:
            # What is due by the end of this tick: a writer that fell behind (a commit took
            # longer than a tick) catches up in its next batch, as a client with a queue would.
            due = round(rate * (time.monotonic() - started + tick)) - n
            if due > 0:
                batch = []
                for _ in range(due):
                    key = EventKey.of(n, "bench", f"lag-{run}-{n}", f"h{n}")
                    batch.append(
                        RecordUsage(key, customers[n % len(customers)], None, "api_calls", 1, {}, None)
                    )
                    n += 1
                results = ingestion.ingest(batch, IngestContext(actor="bench", correlation_id=None))
                committed = time.monotonic()
                commits.append((max(r.position or 0 for r in results), len(batch), committed))
                container.wake_projection()
            next_at += tick
            time.sleep(max(0.0, next_at - time.monotonic()))
        out.put((commits, started, time.monotonic()))
    finally:
        container.close()


def lag_watcher(database_url: str, schema: str, ready: Any, go: Any, done: Any, out: Any) -> None:
    """A process of its own: notes every moment the applied position (what `min_position`
    waits for) moves, polling every 2 ms, until told the last position to wait for."""
    conninfo = DatabaseAddress(database_url).conninfo()
    seen: list[tuple[int, float]] = []  # (applied position, first seen at)
    with psycopg.connect(conninfo, autocommit=True, options=f"-c search_path={schema}") as conn:
        query = "SELECT coalesce(min(watermark), 0) FROM projection_partitions WHERE name = %s"
        conn.execute(query, (CORE_PROJECTION,), prepare=True)
        _ready_then_wait(ready, go)
        last: int | None = None
        drain_until = float("inf")
        while True:
            row = conn.execute(query, (CORE_PROJECTION,), prepare=True).fetchone()
            now = time.monotonic()
            applied = int(row[0]) if row else 0
            if not seen or applied > seen[-1][0]:
                seen.append((applied, now))
            if last is None and not done.empty():
                last = done.get()
                drain_until = now + LAG_DRAIN_SECONDS
            if last is not None and (applied >= last or now > drain_until):
                break
            time.sleep(0.002)
    out.put(seen)


def measure_lag(
    database_url: str, schema: str, seconds: float, rate: float, customers: list[UUID]
) -> tuple[list[float], float, int]:
    """From commit to visible in the read models, with the writer and the watcher in processes
    of their own: the figures describe the relay and the projector, not a writer sharing their
    GIL. Answers the lags (one per event), the rate the writer reached, and how many events
    had not become visible LAG_DRAIN_SECONDS after the writer stopped."""
    spawn = multiprocessing.get_context("spawn")
    ready, go_writer, go_watcher, done, commits_out, seen_out = (spawn.Queue() for _ in range(6))
    writer = spawn.Process(
        target=lag_writer,
        args=(database_url, schema, customers, rate, seconds, ready, go_writer, commits_out),
        name="lag-writer",
    )
    watcher = spawn.Process(
        target=lag_watcher, args=(database_url, schema, ready, go_watcher, done, seen_out), name="lag-watcher"
    )
    writer.start()
    watcher.start()
    try:
        for _ in range(2):
            ready.get(timeout=120)
        started = time.monotonic() + 0.2
        go_writer.put(started)
        go_watcher.put(started)
        commits, began, ended = commits_out.get(timeout=seconds + 120)
        done.put(max((p for p, _, _ in commits), default=0))
        seen: list[tuple[int, float]] = seen_out.get(timeout=LAG_DRAIN_SECONDS + 60)
    finally:
        writer.join(timeout=30)
        watcher.join(timeout=30)
        for process in (writer, watcher):
            if process.is_alive():
                process.kill()
    written = sum(events for _, events, _ in commits)
    reached = written / (ended - began) if ended > began else 0.0
    lags: list[float] = []
    missing = 0
    i = 0
    for position, events, at in commits:  # commits and `seen` both rise
        while i < len(seen) and seen[i][0] < position:
            i += 1
        if i == len(seen):
            missing += events
            continue
        # Each event of a batch waited as long as its batch did.
        lags.extend([max(0.0, seen[i][1] - at)] * events)
    return lags, reached, missing


def copy_history(conninfo: str, source: str, schema: str) -> None:
    with psycopg.connect(conninfo) as conn:
        conn.execute(f"INSERT INTO {schema}.ledger_events SELECT * FROM {source}.ledger_events")
        conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{schema}.ledger_events', 'notification_id'),"
            f" (SELECT max(notification_id) FROM {schema}.ledger_events))"
        )


def percentile(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
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
    # The writer of the lag runs in a process of its own and tells this one of its commits as
    # `ledger up`'s API workers do (a PostgreSQL notification that wakes the relay).
    container = bootstrap(settings, args.database_url, run_projection=False, listen_for_writes=True)
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
        reached: dict[int, float] = {}
        missing: dict[int, int] = {}
        for rate in (int(r) for r in args.lag_rates.split(",") if r):
            lags[rate], reached[rate], missing[rate] = measure_lag(
                args.database_url, schema, args.lag_seconds, rate, customers
            )
            print(
                f"lag at {rate} events/s (writer reached {reached[rate]:.0f}/s):"
                f" p99 {percentile(lags[rate], 0.99):.0f} ms",
                flush=True,
            )
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
            "writer_events_per_s": reached[rate],
            "not_visible": missing[rate],
            "p50_ms": percentile(samples, 0.50),
            "p99_ms": percentile(samples, 0.99),
            "mean_ms": statistics.mean(samples) * 1000 if samples else None,
        }
        lag_figures[str(rate)] = figures
        print(
            f"lag commit -> visible at ~{rate:,} events/s (reached {reached[rate]:,.0f}/s,"
            f" {len(samples)} events, {missing[rate]} not visible):"
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
