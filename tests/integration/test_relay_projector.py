"""The CQRS spine against a real Kafka-protocol broker: the relay publishes the log, the
projector consumes it, and nothing is lost or counted twice whatever crashes."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, date, datetime
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer

from application import commands as c
from infra import kafka as k
from infra.bootstrap import CORE_PROJECTION, Container
from infra.embedded import EmbeddedKafka, free_port
from infra.relay import BackgroundRelay, Relay
from projections.checkpoints import applied_position
from projections.kafka_projector import BackgroundKafkaProjection, KafkaProjector
from projections.replay import replay
from projections.runner import head_position, wait_for_position
from tests.conftest import read_model_rows

MOMENT = datetime(2025, 1, 15, tzinfo=UTC)


@pytest.fixture
def container(settings: Any, database_url: str) -> Any:
    """A container whose read side is fed only by what the tests drive by hand."""
    from infra.bootstrap import bootstrap

    built = bootstrap(settings, database_url, run_projection=False)
    yield built
    built.close()


@pytest.fixture
def topic(container: Container) -> str:
    return f"{container.settings.database_schema}.{k.TOPIC}"


def history(container: Container, customers: int = 5) -> None:
    """A small billing history: plans, customers, subscriptions, invoices, payments."""
    ctx = c.CommandContext(occurred_at=MOMENT, actor="test")
    ledger = container.ledger
    ledger.define_plan(
        c.DefinePlan(code="pro", name="Pro", currency="EUR", amount=2000, interval="month"), ctx
    )
    for i in range(customers):
        cust = ledger.register_customer(
            c.RegisterCustomer(
                external_id=f"k-{uuid.uuid4().hex[:6]}-{i}", email=f"c{i}@x.io", currency="EUR"
            ),
            ctx,
        )
        sub = ledger.start_subscription(c.StartSubscription(cust.resource_id, "pro", quantity=1 + i % 3), ctx)
        inv = ledger.draft_invoice(
            c.DraftInvoice(cust.resource_id, "EUR", [c.InvoiceLine("Pro", 1, 2000)], sub.resource_id), ctx
        )
        ledger.finalize_invoice(c.FinalizeInvoice(inv.resource_id, date(2025, 2, 1)), ctx)
        pay = ledger.initiate_payment(c.InitiatePayment(cust.resource_id, 2000, "EUR", inv.resource_id), ctx)
        if i % 2:
            ledger.fail_payment(c.FailPayment(pay.resource_id, "card_declined"), ctx)
        else:
            ledger.succeed_payment(c.SucceedPayment(pay.resource_id), ctx)


def drain(projector: KafkaProjector, container: Container, attempts: int = 100) -> None:
    """Poll until the projector has applied the whole log (bounded by poll count, not time)."""
    head = head_position(container.pool)
    for _ in range(attempts):
        if applied_position(container.pool, projector.name) >= head:
            return
        projector.run_once(timeout_ms=200)
    pytest.fail(f"projector stuck at {applied_position(container.pool, projector.name)} of {head}")


def wait_applied(container: Container, timeout: float = 60) -> None:
    head = head_position(container.pool)
    if not wait_for_position(container.pool, CORE_PROJECTION, head, timeout):
        pytest.fail(f"read models stuck at {applied_position(container.pool, CORE_PROJECTION)} of {head}")


def publish_all(relay: Relay) -> None:
    while relay.run_once():
        pass


def test_projected_read_models_equal_a_replay_from_the_store(
    container: Container, kafka_servers: str, topic: str
) -> None:
    history(container)
    relay = Relay(container.pool, kafka_servers, topic, partitions=3)
    publish_all(relay)
    projector = KafkaProjector(container.pool, kafka_servers, topic, CORE_PROJECTION)
    try:
        drain(projector, container)
        live = read_model_rows(container)
        assert len(live["rm_customers"]) == 5
        replay(container.address.conninfo(), container.settings.database_schema, CORE_PROJECTION)
        assert read_model_rows(container) == live
        replay(container.address.conninfo(), container.settings.database_schema, CORE_PROJECTION, workers=2)
        assert read_model_rows(container) == live
    finally:
        projector.close()
        relay.close()


def read_topic(servers: str, topic: str) -> list[tuple[Any, dict[str, str], dict[str, Any]]]:
    """Every message of the topic, as a plain Kafka client reads it (no ledger code): read from
    the beginning until nothing more comes for a few seconds."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=servers,
        auto_offset_reset="earliest",
        group_id=None,
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
    )
    try:
        return [
            (m, {key: bytes(value).decode() for key, value in m.headers}, orjson.loads(m.value))
            for m in consumer
        ]
    finally:
        consumer.close()


def test_any_kafka_client_reads_the_topic_which_holds_events_and_nothing_else(
    container: Container, kafka_servers: str, topic: str
) -> None:
    history(container, customers=2)
    relay = Relay(container.pool, kafka_servers, topic, partitions=3)
    publish_all(relay)
    relay.close()
    with container.pool.connection() as conn:
        rows: list[Any] = conn.execute("SELECT * FROM events").fetchall()
    stored = {r["position"]: r for r in rows}
    messages = read_topic(kafka_servers, topic)
    assert sorted(value["position"] for _, _, value in messages) == sorted(stored)  # each once, nothing else
    for message, headers, value in messages:
        row = stored[value["position"]]
        assert message.key == str(row["customer_id"] or row["stream_id"]).encode()
        assert headers["type"] == row["type"] == value["type"]
        assert int(headers["position"]) == value["position"]
        assert value["stream_id"] == str(row["stream_id"])
        assert value["version"] == row["version"]
        assert datetime.fromisoformat(value["occurred_at"]) == row["occurred_at"]
        assert datetime.fromisoformat(value["recorded_at"]) == row["recorded_at"]
        assert value["source"] == row["source"] and value["actor"] == row["actor"]
        assert value["schema_version"] == row["schema_version"]
        assert value["payload"] == row["payload"]
    watermarks = read_topic(kafka_servers, k.watermark_topic_for(topic))
    assert watermarks and {headers["type"] for _, headers, _ in watermarks} == {k.WATERMARK_TYPE}


def test_ledger_replay_command_rebuilds_the_read_models(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from infra.cli import app
    from projections.runner import StoreProjector

    history(container, customers=3)
    StoreProjector(container.pool, CORE_PROJECTION).catch_up()
    live = read_model_rows(container)
    monkeypatch.setenv("LEDGER_DATABASE_URL", str(container.settings.database_url))
    monkeypatch.setenv("LEDGER_DATABASE_SCHEMA", container.settings.database_schema)
    result = CliRunner().invoke(app, ["replay", "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert f"rebuilt up to position {head_position(container.pool)}" in result.output
    assert read_model_rows(container) == live


def test_switching_between_kafka_and_store_feeds_applies_nothing_twice(
    container: Container, kafka_servers: str, topic: str
) -> None:
    from projections.runner import StoreProjector

    history(container, customers=2)
    StoreProjector(container.pool, CORE_PROJECTION).catch_up()  # fed from the store first
    history(container, customers=2)
    relay = Relay(container.pool, kafka_servers, topic, partitions=3)
    publish_all(relay)
    projector = KafkaProjector(container.pool, kafka_servers, topic, CORE_PROJECTION)  # then Kafka
    try:
        drain(projector, container)
    finally:
        projector.close()
    history(container, customers=2)
    StoreProjector(container.pool, CORE_PROJECTION).catch_up()  # and back to the store
    relay.close()
    live = read_model_rows(container)
    assert len(live["rm_customers"]) == 6
    replay(container.address.conninfo(), container.settings.database_schema, CORE_PROJECTION)
    assert read_model_rows(container) == live


def test_store_feed_refuses_kafka_read_models_that_are_ahead(container: Container) -> None:
    from projections.checkpoints import FeedConflict
    from projections.runner import StoreProjector

    with container.pool.connection() as conn:
        conn.execute(
            "INSERT INTO projection_partitions (name, partition, position, watermark)"
            " VALUES ('core', 0, 50, 40), ('core', 1, 30, 40)"
        )
    with pytest.raises(FeedConflict, match="ledger replay"):
        StoreProjector(container.pool, CORE_PROJECTION)


def test_plain_consumer_reads_every_position_once_after_the_broker_restarted_empty(
    container: Container,
) -> None:
    """Observation 10: after the embedded broker restarted empty, only positions after the
    projector's checkpoint were published again, so a consumer reading from the beginning missed
    most of the log (and met watermark messages)."""
    broker = EmbeddedKafka(free_port())
    servers = broker.start()
    topic = f"{container.settings.database_schema}.{k.TOPIC}"
    pool = container.pool
    relay = BackgroundRelay(Relay(pool, servers, topic))  # 6 partitions; Tansu creates topics with 4
    projection = BackgroundKafkaProjection(lambda: KafkaProjector(pool, servers, topic, CORE_PROJECTION))
    relay.start()
    projection.start()
    try:
        history(container, customers=4)
        wait_applied(container)
        broker.restart()
        history(container, customers=4)
        container.wake_projection()
        wait_applied(container, timeout=120)  # read-your-writes goes on through the new topic
        head = head_position(pool)
        positions = sorted(value["position"] for _, _, value in read_topic(servers, topic))
    finally:
        projection.stop()
        relay.stop()
        broker.stop()
    assert positions == list(range(1, head + 1))


def test_relay_checks_on_the_broker_without_a_consumer_warning(
    container: Container, kafka_servers: str, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Observation 11: "group_id is None: disabling auto-commit" was logged every 5 s, by a
    consumer the relay created for each check."""
    history(container, customers=1)
    relay = Relay(container.pool, kafka_servers, topic, partitions=3)
    try:
        publish_all(relay)
        with caplog.at_level(logging.INFO):
            for _ in range(3):
                assert relay.verify_broker() is False
    finally:
        relay.close()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and not _slow_task(r)]
    assert not warnings, caplog.text


def _slow_task(record: logging.LogRecord) -> bool:
    """kafka-python's note that one of its tasks held its event loop too long: on a loaded
    machine a descheduled thread makes it, whatever the relay does."""
    return record.name == "kafka.net.selector" and "ran for" in record.getMessage()


def test_relay_restarted_with_a_new_embedded_broker_fills_it_without_crying_data_loss(
    container: Container, caplog: pytest.LogCaptureFixture
) -> None:
    """Observation 11: every `ledger up` logged "broker lost acknowledged data" (its embedded
    broker keeps nothing, so each start meets a new topic: nothing was lost)."""
    broker = EmbeddedKafka(free_port())
    servers = broker.start()
    topic = f"{container.settings.database_schema}.{k.TOPIC}"
    try:
        history(container, customers=2)
        first = Relay(container.pool, servers, topic, partitions=3)
        publish_all(first)
        first.close()
        broker.restart()  # what a new `ledger up` starts with
        history(container, customers=1)
        with caplog.at_level(logging.INFO, logger="infra.relay"):
            second = Relay(container.pool, servers, topic, partitions=3)
            publish_all(second)
            second.close()
        positions = sorted(value["position"] for _, _, value in read_topic(servers, topic))
    finally:
        broker.stop()
    assert positions == list(range(1, head_position(container.pool) + 1))
    relay_records = [r for r in caplog.records if r.name == "infra.relay"]
    assert not [r for r in relay_records if r.levelno >= logging.WARNING], caplog.text
    assert any("new on this broker" in r.getMessage() for r in relay_records), caplog.text


def test_a_second_relay_waits_while_one_publishes_and_takes_over_without_sending_twice(
    container: Container, kafka_servers: str, topic: str
) -> None:
    history(container, customers=2)
    first = Relay(container.pool, kafka_servers, topic, partitions=3)
    second = Relay(container.pool, kafka_servers, topic, partitions=3)
    try:
        publish_all(first)
        history(container, customers=1)
        assert second.run_once() == 0  # on standby while the first holds the topic
        first.close()
        publish_all(second)
    finally:
        first.close()
        second.close()
    positions = sorted(value["position"] for _, _, value in read_topic(kafka_servers, topic))
    assert positions == list(range(1, head_position(container.pool) + 1))
