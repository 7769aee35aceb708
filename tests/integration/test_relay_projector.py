"""The CQRS spine against a real Kafka-protocol broker: the relay publishes the log, the
projector consumes it, and nothing is lost or counted twice whatever crashes."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer

from application import commands as c
from infra import kafka as k
from infra.bootstrap import CORE_PROJECTION, Container
from infra.relay import Relay
from projections.checkpoints import applied_position
from projections.kafka_projector import KafkaProjector
from projections.replay import replay
from projections.runner import head_position
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


def test_any_kafka_client_reads_the_topic(container: Container, kafka_servers: str, topic: str) -> None:
    history(container, customers=2)
    relay = Relay(container.pool, kafka_servers, topic, partitions=3)
    publish_all(relay)
    relay.close()
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_servers,
        auto_offset_reset="earliest",
        group_id=None,
        consumer_timeout_ms=3000,
    )
    with container.pool.connection() as conn:
        stored = {r["position"]: r for r in conn.execute("SELECT * FROM events").fetchall()}  # type: ignore[index]
    seen: dict[int, Any] = {}
    for message in consumer:
        headers = {key: bytes(value).decode() for key, value in message.headers}
        if headers["type"] == k.WATERMARK_TYPE:
            continue
        value = orjson.loads(message.value)
        seen[value["position"]] = (message, headers, value)
        if len(seen) == len(stored):
            break
    consumer.close()
    assert sorted(seen) == sorted(stored)
    for position, (message, headers, value) in seen.items():
        row = stored[position]
        assert message.key == str(row["customer_id"] or row["stream_id"]).encode()
        assert headers["type"] == row["type"] == value["type"]
        assert int(headers["position"]) == position
        assert value["stream_id"] == str(row["stream_id"])
        assert value["version"] == row["version"]
        assert datetime.fromisoformat(value["occurred_at"]) == row["occurred_at"]
        assert datetime.fromisoformat(value["recorded_at"]) == row["recorded_at"]
        assert value["source"] == row["source"] and value["actor"] == row["actor"]
        assert value["schema_version"] == row["schema_version"]
        assert value["payload"] == row["payload"]


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
