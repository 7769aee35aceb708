"""A projector that meets an event it cannot apply stops there loudly (observation 3's "fails
forever" and observation 4's crash loop, whatever the event): `/readyz` names it, the ops page
gives the position and the error, one critical alert is raised, and it goes on once it can."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from psycopg import Connection

from api.app import create_app
from infra import kafka as k
from infra.bootstrap import CORE_PROJECTION, Container, bootstrap
from infra.eventstore import LedgerStoredEvent
from infra.relay import Relay
from projections.checkpoints import applied_position
from projections.core import Executor, StoredEventRow
from projections.failures import ALERT_TYPE, ProjectionAlerts, ProjectionFailed
from projections.kafka_projector import KafkaProjector
from projections.registry import CORE
from projections.runner import StoreProjector, head_position
from tests.conftest import bearer
from tests.integration.test_relay_projector import MOMENT, history


@pytest.fixture
def container(settings: Any, database_url: str) -> Iterator[Container]:
    """A container whose read side is driven by hand, and which says where its topic is."""
    prefix = f"{settings.database_schema}."
    built = bootstrap(
        settings.model_copy(update={"kafka_topic_prefix": prefix}), database_url, run_projection=False
    )
    yield built
    built.close()


@pytest.fixture
def api(container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(lambda: container), raise_server_exceptions=False) as client:
        _, key = container.keys.mint(role="read", name="tests")
        client.headers.update(bearer(key))
        yield client


def append_unappliable_event(container: Container) -> int:
    """A `Customer.Registered` without the email every registration has: the core projector's
    handler cannot apply it. Written straight through the recorder, as no command would."""
    stream = uuid.uuid4()
    payload = {
        "external_id": f"crafted-{stream.hex[:6]}",
        "name": "",
        "currency": "EUR",
        "tax_rate_bps": 0,
        "metadata": {},
    }
    container.ledger.recorder.insert_events(
        [
            LedgerStoredEvent(
                originator_id=stream,
                originator_version=1,
                topic="domain.customer:Customer.Registered",
                state=orjson.dumps(payload),
                event_type="Customer.Registered",
                occurred_at=MOMENT,
                customer_id=stream,
                source="system",
            )
        ]
    )
    return head_position(container.pool)


class FixedCore:
    """The core projector after a fix that reads a registration without an email."""

    def __call__(self, cur: Executor, event: StoredEventRow) -> None:
        if event.type == "Customer.Registered" and "email" not in event.payload:
            event = event._replace(payload={**event.payload, "email": "unknown@example.invalid"})
        CORE(cur, event)

    def settle(self, conn: Connection[Any], events: Sequence[StoredEventRow]) -> None:
        CORE.settle(conn, events)


def alert_events(container: Container) -> list[tuple[str, dict[str, Any]]]:
    with container.pool.connection() as conn:
        rows: Any = conn.execute(
            "SELECT type, payload FROM events WHERE type LIKE 'Alert.%%' ORDER BY position"
        ).fetchall()
    return [
        (r["type"], r["payload"])
        for r in rows
        if r["type"] != "Alert.Raised" or r["payload"]["alert_type"] == ALERT_TYPE
    ]


def poll_until(projector: KafkaProjector, done: Any, polls: int = 150) -> None:
    for _ in range(polls):
        projector.run_once(timeout_ms=200)
        if done():
            return
    pytest.fail("the projector did not get there")


def test_projector_stops_loudly_at_an_event_it_cannot_apply_and_goes_on_after_a_fix(
    container: Container, api: TestClient, kafka_servers: str
) -> None:
    container.kafka_bootstrap_servers = kafka_servers
    topic = k.topic_name(container.settings.kafka_topic_prefix)
    alerts = ProjectionAlerts(container.ledger, container.pool)
    history(container, customers=2)
    crafted = append_unappliable_event(container)
    history(container, customers=2)
    relay = Relay(container.pool, kafka_servers, topic, partitions=3)

    def relay_all() -> None:
        while relay.run_once():
            pass

    relay_all()
    projector = KafkaProjector(
        container.pool,
        kafka_servers,
        topic,
        CORE_PROJECTION,
        on_failure=alerts.failed,
        on_resume=alerts.resumed,
    )
    try:
        poll_until(projector, lambda: projector.stopped)
        [stopped] = projector.stopped.values()
        assert stopped.failure.position == crafted
        for _ in range(20):  # it does not try again before its turn: no loop
            projector.run_once(timeout_ms=100)

        ops = api.get("/v1/ops/projections").json()
        core = next(p for p in ops["projectors"] if p["name"] == CORE_PROJECTION)
        assert core["status"] == "stopped"
        assert core["position"] < crafted
        failure = core["failure"]
        assert (failure["position"], failure["event_type"], failure["attempts"]) == (
            crafted,
            "Customer.Registered",
            1,
        )
        assert "KeyError" in failure["error"] and "email" in failure["error"]
        assert ops["kafka"] == {
            "bootstrap_servers": kafka_servers,
            "topic": topic,
            "watermark_topic": k.watermark_topic_for(topic),
        }

        ready = api.get("/readyz")
        assert ready.status_code == 503
        check = ready.json()["checks"]["projector:core"]
        assert (check["status"], check["position"], check["event_type"]) == (
            "stopped",
            crafted,
            "Customer.Registered",
        )

        projector.retry_stopped_partitions()  # its turn came: tried again, failed again
        poll_until(projector, lambda: projector.stopped)
        again = api.get("/v1/ops/projections").json()
        assert (
            next(p for p in again["projectors"] if p["name"] == CORE_PROJECTION)["failure"]["attempts"] == 2
        )
        raised = [payload for kind, payload in alert_events(container) if kind == "Alert.Raised"]
        assert len(raised) == 1  # raised once
        assert raised[0]["severity"] == "critical"
        assert str(crafted) in raised[0]["message"]
    finally:
        projector.close()

    # The fix is deployed and the projector restarted: it applies the event and goes on.
    fixed = KafkaProjector(
        container.pool,
        kafka_servers,
        topic,
        CORE_PROJECTION,
        apply=FixedCore(),
        on_failure=alerts.failed,
        on_resume=alerts.resumed,
    )
    try:
        poll_until(fixed, lambda: applied_position(container.pool, CORE_PROJECTION) >= crafted)
        assert [kind for kind, _ in alert_events(container)] == ["Alert.Raised", "Alert.Resolved"]
        relay_all()  # the alert's own events, for the read models
        poll_until(
            fixed, lambda: applied_position(container.pool, CORE_PROJECTION) >= head_position(container.pool)
        )
    finally:
        fixed.close()
        relay.close()
    ops = api.get("/v1/ops/projections").json()
    core = next(p for p in ops["projectors"] if p["name"] == CORE_PROJECTION)
    assert (core["status"], core["failure"]) == ("running", None)
    assert api.get("/readyz").status_code == 200
    rows = api.get("/v1/alerts", params={"type": ALERT_TYPE}).json()["data"]
    assert [(a["severity"], a["status"], a["subject"]) for a in rows] == [
        ("critical", "resolved", "projector:core")
    ]


def test_store_fed_projector_applies_everything_before_the_event_it_cannot_apply_and_stops_there(
    container: Container, api: TestClient
) -> None:
    alerts = ProjectionAlerts(container.ledger, container.pool)
    history(container, customers=1)
    before = head_position(container.pool)
    crafted = append_unappliable_event(container)
    history(container, customers=1)
    projector = StoreProjector(
        container.pool, CORE_PROJECTION, on_failure=alerts.failed, on_resume=alerts.resumed
    )
    with pytest.raises(ProjectionFailed) as stopped:
        projector.run_once()
    assert stopped.value.failure.position == crafted
    assert applied_position(container.pool, CORE_PROJECTION) == before
    with pytest.raises(ProjectionFailed):
        projector.run_once()  # tried again: the same event, the same single alert
    assert [kind for kind, _ in alert_events(container)] == ["Alert.Raised"]
    ready = api.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["projector:core"]["position"] == crafted

    restarted = StoreProjector(
        container.pool, CORE_PROJECTION, apply=FixedCore(), on_failure=alerts.failed, on_resume=alerts.resumed
    )
    restarted.catch_up()
    assert applied_position(container.pool, CORE_PROJECTION) == head_position(container.pool)
    assert api.get("/readyz").status_code == 200
    assert [kind for kind, _ in alert_events(container)] == ["Alert.Raised", "Alert.Resolved"]
