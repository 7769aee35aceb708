"""Whatever crashes, the read models end identical to a replay from the event store: a relay
that dies between publishing and recording, a projector killed with SIGKILL while it works,
two projector processes sharing (then inheriting) partitions, a broker that restarts empty."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from application.simulation import Simulation
from infra import kafka as k
from infra.bootstrap import CORE_PROJECTION, Container, bootstrap
from infra.embedded import EmbeddedKafka, free_port
from infra.relay import BackgroundRelay, Relay, RelayState
from projections.checkpoints import applied_position
from projections.kafka_projector import BackgroundKafkaProjection, KafkaProjector
from projections.replay import replay
from projections.runner import head_position, wait_for_position
from tests.conftest import read_model_rows

REPO = Path(__file__).resolve().parents[2]
UNTIL = datetime(2025, 6, 1, tzinfo=UTC)
ASSIGNED = re.compile(r"partitions assigned \[([\d, ]*)\]")


@pytest.fixture
def container(settings: Any, database_url: str) -> Iterator[Container]:
    built = bootstrap(settings, database_url, run_projection=False)
    yield built
    built.close()


def topic_of(container: Container) -> str:
    return k.topic_name(f"{container.settings.database_schema}.")


def simulate(container: Container, customers: int, seed: int) -> None:
    Simulation(container.ledger, customers=customers, months=6, seed=seed, until=UNTIL).run()


def assert_equals_replay(container: Container) -> None:
    live = read_model_rows(container)
    assert sum(len(rows) for rows in live.values()) > 0
    replay(container.address.conninfo(), container.settings.database_schema, CORE_PROJECTION)
    assert read_model_rows(container) == live


def wait_applied(container: Container, timeout: float = 60) -> None:
    head = head_position(container.pool)
    if not wait_for_position(container.pool, CORE_PROJECTION, head, timeout):
        pytest.fail(f"read models stuck at {applied_position(container.pool, CORE_PROJECTION)} of {head}")


class CrashAfterPublishing(Relay):
    """A relay that dies after the broker acknowledged and before it records its position."""

    def _save_state(self, state: RelayState) -> None:
        if state.position > self.state.position:
            raise SystemExit("relay killed after publishing")
        super()._save_state(state)


def test_relay_crash_after_publishing_counts_the_republished_range_once(
    container: Container, kafka_servers: str
) -> None:
    simulate(container, customers=8, seed=11)
    topic = topic_of(container)
    crashing = CrashAfterPublishing(container.pool, kafka_servers, topic, partitions=3)
    with pytest.raises(SystemExit):
        crashing.publish_once()
    crashing.close()
    restarted = BackgroundRelay(Relay(container.pool, kafka_servers, topic, partitions=3))
    pool = container.pool
    projection = BackgroundKafkaProjection(lambda: KafkaProjector(pool, kafka_servers, topic))
    restarted.start()
    projection.start()
    try:
        wait_applied(container)
    finally:
        projection.stop()
        restarted.stop()
    assert_equals_replay(container)


class ProjectorProcess:
    """`ledger project` in a subprocess, its output collected by a thread."""

    def __init__(self, container: Container, kafka_servers: str) -> None:
        env = {
            **os.environ,
            "LEDGER_DATABASE_URL": str(container.settings.database_url),
            "LEDGER_DATABASE_SCHEMA": container.settings.database_schema,
            "LEDGER_KAFKA_BOOTSTRAP_SERVERS": kafka_servers,
            "LEDGER_KAFKA_TOPIC_PREFIX": f"{container.settings.database_schema}.",
            "PYTHONUNBUFFERED": "1",
            # Small transactions, so that a kill can fall between two of them.
            "LEDGER_KAFKA_MAX_POLL_RECORDS": "200",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "infra.cli", "project", CORE_PROJECTION],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.assigned = threading.Event()
        self.assignments: list[set[int]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            match = ASSIGNED.search(line)
            if match:
                parts = {int(p) for p in match.group(1).replace(" ", "").split(",") if p}
                self.assignments.append(parts)
                if parts:
                    self.assigned.set()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def test_projector_killed_while_working_resumes_without_loss_or_double_count(
    container: Container, kafka_servers: str
) -> None:
    topic = topic_of(container)
    relay = Relay(container.pool, kafka_servers, topic, partitions=3)
    simulate(container, customers=120, seed=12)
    while relay.run_once():
        pass
    first = ProjectorProcess(container, kafka_servers)
    try:
        head = head_position(container.pool)
        killed_at = None
        for _ in range(100_000):
            applied = applied_position(container.pool, CORE_PROJECTION)
            with container.pool.connection() as conn:
                row: Any = conn.execute(
                    "SELECT coalesce(sum(position), 0) AS progress FROM projection_partitions"
                    " WHERE name = %s",
                    (CORE_PROJECTION,),
                ).fetchone()
            if row["progress"] > 0 and applied < head:
                first.kill()
                killed_at = applied
                break
            if first.process.poll() is not None:
                pytest.fail("projector exited:\n" + "".join(first.lines))
        assert killed_at is not None, "the projector finished before it could be killed"
        assert killed_at < head
    finally:
        first.stop()
    second = ProjectorProcess(container, kafka_servers)
    try:
        wait_applied(container)
    finally:
        second.stop()
        relay.close()
    assert_equals_replay(container)


def test_two_projectors_share_partitions_and_one_takes_over_when_the_other_dies(
    container: Container, kafka_servers: str
) -> None:
    topic = topic_of(container)
    relay = Relay(container.pool, kafka_servers, topic, partitions=4)
    one, two = ProjectorProcess(container, kafka_servers), ProjectorProcess(container, kafka_servers)
    try:
        assert one.assigned.wait(60) and two.assigned.wait(60), "".join(one.lines + two.lines)
        simulate(container, customers=20, seed=13)
        while relay.run_once():
            pass
        wait_applied(container)
        assert one.assignments[-1] and two.assignments[-1]
        assert not one.assignments[-1] & two.assignments[-1], "a partition was given to both"
        one.kill()
        simulate(container, customers=20, seed=14)
        while relay.run_once():
            pass
        wait_applied(container)
        assert two.assignments[-1] == {0, 1, 2, 3}
    finally:
        one.stop()
        two.stop()
        relay.close()
    assert_equals_replay(container)


def test_broker_restarting_empty_loses_and_doubles_nothing(container: Container) -> None:
    broker = EmbeddedKafka(free_port())
    servers = broker.start()
    topic = topic_of(container)
    pool = container.pool
    relay = BackgroundRelay(Relay(pool, servers, topic, partitions=3))
    projection = BackgroundKafkaProjection(lambda: KafkaProjector(pool, servers, topic))
    relay.start()
    projection.start()
    try:
        simulate(container, customers=10, seed=15)
        wait_applied(container)
        broker.restart()
        simulate(container, customers=10, seed=16)
        container.wake_projection()
        wait_applied(container, timeout=90)
    finally:
        projection.stop()
        relay.stop()
        broker.stop()
    assert_equals_replay(container)


def register_customers(container: Container, count: int, tag: str) -> None:
    from application import commands as c

    ctx = c.CommandContext(occurred_at=UNTIL, actor="test")
    for i in range(count):
        container.ledger.register_customer(
            c.RegisterCustomer(external_id=f"{tag}-{i}", email=f"{tag}{i}@x.io", currency="EUR"), ctx
        )


def test_projector_keeps_applying_after_the_sealer_rolls_back_on_its_pooled_connection(
    container: Container,
) -> None:
    """Observation 4: after `ledger simulate` against a running ledger the projector failed on
    every batch with `prepared statement "ledger_projection_N" does not exist`. The sealer's
    `LOCK ... NOWAIT` fails while writers append, its transaction rolls back, and psycopg then
    deallocates every prepared statement of that pooled connection, the projector's included."""
    import psycopg

    from infra.database import open_pool
    from infra.seals import safe_horizon
    from projections.runner import StoreProjector

    schema = container.settings.database_schema
    shared = open_pool(container.address, schema, 1, name="shared")  # one connection for both
    try:
        projector = StoreProjector(shared, CORE_PROJECTION)
        for batch in range(6):  # psycopg prepares a query of its own once it ran it 5 times
            register_customers(container, 1, f"before{batch}")
            assert projector.run_once() == 1
        with psycopg.connect(container.address.conninfo()) as writer, writer.transaction():
            writer.execute(f"SET LOCAL search_path TO {schema}")
            writer.execute("LOCK TABLE ledger_events IN EXCLUSIVE MODE")  # as an append holds it
            assert safe_horizon(shared, patience_seconds=0) is None  # the sealer gave up
        register_customers(container, 2, "after")
        assert projector.run_once() == 2
        with shared.connection() as conn:
            row: Any = conn.execute("SELECT count(*) AS n FROM rm_customers").fetchone()
        assert row["n"] == 8
    finally:
        shared.close()


def test_a_failed_batch_leaves_nothing_the_next_batch_on_its_connection_trips_on(
    container: Container,
) -> None:
    """A Parse queued behind a failing statement is skipped by the server: a sink that trusted
    its statements would then execute one that was never prepared. On the pool's connections
    (statements kept from batch to batch) and on a plain one (closed after each batch)."""
    import psycopg

    from projections.pipeline_sink import PipelineSink

    def batches_on(conn: psycopg.Connection[Any]) -> None:
        with (
            pytest.raises(psycopg.errors.DivisionByZero),
            conn.transaction(),
            PipelineSink(conn, transaction=False) as sink,
        ):
            sink.execute("SELECT 1 / %s::int", (0,))
            sink.execute("SELECT 2 * %s::int", (2,))  # its Parse is skipped
        with conn.transaction(), PipelineSink(conn, transaction=False) as sink:
            sink.execute("SELECT 2 * %s::int", (3,))

    with container.pool.connection() as pooled:
        batches_on(pooled)
    with psycopg.connect(container.address.conninfo()) as plain:
        batches_on(plain)
        left: Any = plain.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'ledger_projection_%%'"
        ).fetchone()
    assert left[0] == 0


def test_projector_goes_on_when_its_prepared_statements_vanish_under_it(container: Container) -> None:
    """Whoever deallocates them (a `DEALLOCATE ALL` on the session), the projector's next batch
    fails once, is gone through again with statements prepared anew, and nothing stops."""
    from infra.database import open_pool
    from projections.runner import StoreProjector

    shared = open_pool(container.address, container.settings.database_schema, 1, name="shared")
    try:
        projector = StoreProjector(shared, CORE_PROJECTION)
        register_customers(container, 2, "before")
        assert projector.run_once() == 2
        with shared.connection() as conn:
            conn.execute("DEALLOCATE ALL")
        register_customers(container, 2, "after")
        assert projector.catch_up() == 2
        with shared.connection() as conn:
            customers: Any = conn.execute("SELECT count(*) AS n FROM rm_customers").fetchone()
            stopped: Any = conn.execute(
                "SELECT count(*) AS n FROM projection_partitions WHERE failed_position IS NOT NULL"
            ).fetchone()
        assert (customers["n"], stopped["n"]) == (4, 0)
    finally:
        shared.close()
