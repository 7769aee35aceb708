"""POST /v1/events within the ledger's limits (SPEC section 5, "Ingest" and "Limits that hold on
every path"): an event is known by its id in every content mode, the same event sent in another
mode is a duplicate, and no event can carry a time or a value the ledger cannot hold. The client
side is the `cloudevents` SDK, as a sender would use it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from cloudevents.core.v1.event import CloudEvent
from fastapi.testclient import TestClient

from application.ingestion import EventKey, IngestContext, RecordUsage
from domain import ids
from infra.bootstrap import Container
from ingest.cloudevents import content_hash
from tests.conftest import bearer, count_events
from tests.integration.ingest_helpers import (
    BATCH,
    batch_body,
    binary,
    event,
    register,
    structured,
    usage,
)


@pytest.fixture
def ingest_key(container: Container) -> dict[str, str]:
    _, raw = container.keys.mint(role="ingest", name="saas")
    return bearer(raw)


@pytest.fixture
def acme(client: TestClient, admin: dict[str, str]) -> Any:
    return register(client, admin, "acme")


Sender = Callable[[TestClient, dict[str, str], CloudEvent], Any]


def send_binary(client: TestClient, key: dict[str, str], ce: CloudEvent) -> Any:
    body, headers = binary(ce)
    return client.post("/v1/events", content=body, headers={**key, **headers})


def send_structured(client: TestClient, key: dict[str, str], ce: CloudEvent) -> Any:
    body, headers = structured(ce)
    return client.post("/v1/events", content=body, headers={**key, **headers})


def send_batch(client: TestClient, key: dict[str, str], ce: CloudEvent) -> Any:
    return client.post("/v1/events", content=batch_body([ce]), headers={**key, "Content-Type": BATCH})


def send_json_array(client: TestClient, key: dict[str, str], ce: CloudEvent) -> Any:
    return client.post(
        "/v1/events", content=batch_body([ce]), headers={**key, "Content-Type": "application/json"}
    )


MODES: dict[str, Sender] = {
    "binary": send_binary,
    "structured": send_structured,
    "batch": send_batch,
    "json_array": send_json_array,
}


def statuses(response: Any) -> list[str]:
    return [r["status"] for r in response.json()["results"]]


# ---------------------------------------------------------------------------- the id


def test_binary_event_without_ce_id_is_400_and_records_nothing(
    client: TestClient, ingest_key: dict[str, str], acme: Any, container: Container
) -> None:
    body, headers = binary(usage("will-be-dropped", 3))
    before = count_events(container)
    for headers_sent in (
        {k: v for k, v in headers.items() if k.lower() != "ce-id"},
        {**{k: v for k, v in headers.items() if k.lower() != "ce-id"}, "ce-id": ""},
    ):
        for _ in range(2):  # a retry must not count the usage twice either
            response = client.post("/v1/events", content=body, headers={**ingest_key, **headers_sent})
            assert response.status_code == 400, response.text
            assert response.headers["content-type"] == "application/problem+json"
            problem = response.json()
            assert problem["type"].endswith("/missing_id")
            assert problem["errors"][0]["field"] == "ce-id"
    assert count_events(container) == before


# ---------------------------------------------------------------------------- one event, any mode


@pytest.mark.parametrize(
    ("first", "then"),
    [
        ("binary", "structured"),
        ("structured", "binary"),
        ("structured", "batch"),
        ("batch", "binary"),
        ("json_array", "structured"),
    ],
)
def test_the_same_event_sent_again_in_another_mode_is_a_duplicate(
    client: TestClient, ingest_key: dict[str, str], acme: Any, container: Container, first: str, then: str
) -> None:
    ce = event(
        f"mode-{first}-{then}",
        data={"metric": "api_calls", "value": 7, "properties": {"region": "eu", "tier": 2}},
        time=datetime(2025, 3, 1, 13, tzinfo=UTC),
    )
    response = MODES[first](client, ingest_key, ce)
    assert response.status_code == 202, response.text
    recorded = count_events(container)
    again = MODES[then](client, ingest_key, ce)
    assert again.status_code == 202, again.text
    assert statuses(again) == ["duplicate"]
    assert again.json()["position"] == response.json()["position"]
    assert count_events(container) == recorded


def test_a_customer_event_sent_binary_then_structured_is_a_duplicate(
    client: TestClient, ingest_key: dict[str, str], container: Container
) -> None:
    ce = event(
        "cus-mode-1",
        "customer.created",
        {"email": "billing@globex.test", "name": "Globex", "currency": "EUR"},
        subject="globex",
    )
    assert send_binary(client, ingest_key, ce).status_code == 202
    recorded = count_events(container)
    again = send_structured(client, ingest_key, ce)
    assert statuses(again) == ["duplicate"]
    assert count_events(container) == recorded


def test_an_extension_attribute_is_the_same_whether_sent_as_a_header_or_in_json(
    client: TestClient, ingest_key: dict[str, str], acme: Any
) -> None:
    """A header can only carry text: an integer extension sent in binary mode is its canonical
    string, so the structured event with the integer is the same event."""
    attributes = {
        "id": "ext-1",
        "source": "saas-1",
        "type": "usage.recorded",
        "subject": "acme",
        "time": datetime(2025, 3, 1, tzinfo=UTC),
        "shard": 12,
        "replayed": True,
    }
    ce = CloudEvent(dict(attributes), {"metric": "api_calls", "value": 1})
    assert send_structured(client, ingest_key, ce).status_code == 202
    assert statuses(send_binary(client, ingest_key, ce)) == ["duplicate"]


@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_an_event_recorded_under_the_former_as_sent_fingerprint_is_still_a_duplicate_when_resent(
    client: TestClient, ingest_key: dict[str, str], acme: Any, container: Container, mode: str
) -> None:
    """Events recorded before the fingerprint became canonical carry the fingerprint of their
    representation; a client retrying one after the upgrade gets `duplicate`, not a conflict."""
    ce = usage(f"legacy-{mode}", 4)
    body, headers = structured(ce) if mode == "structured" else binary(ce)
    as_sent = (
        orjson.loads(body)
        if mode == "structured"
        else {**{k: v for k, v in headers.items() if k.startswith("ce-")}, "data": orjson.loads(body)}
    )
    key = EventKey.of(0, "saas-1", f"legacy-{mode}", content_hash(as_sent))
    command = RecordUsage(key, ids.customer_id("acme"), "acme", "api_calls", 4, {}, ce.get_time())
    assert container.ingestion is not None
    (first,) = container.ingestion.ingest([command], IngestContext(actor=None, correlation_id=None))
    assert first.status == "accepted"
    again = MODES[mode](client, ingest_key, ce)
    assert statuses(again) == ["duplicate"]


def test_the_same_id_with_another_value_is_still_a_conflict_across_modes(
    client: TestClient, ingest_key: dict[str, str], acme: Any
) -> None:
    assert send_binary(client, ingest_key, usage("conflict-1", 5)).status_code == 202
    response = send_structured(client, ingest_key, usage("conflict-1", 6))
    assert response.status_code == 409
    assert response.json()["type"].endswith("/conflict")


# ---------------------------------------------------------------------------- time


FAR_FUTURE = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
YEAR_ONE = datetime(1, 1, 1, tzinfo=UTC)
BEFORE_EPOCH = datetime(1999, 12, 31, 23, 59, tzinfo=UTC)


@pytest.mark.parametrize("moment", [FAR_FUTURE, YEAR_ONE, BEFORE_EPOCH], ids=["9999", "0001", "1999"])
@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_a_single_event_with_a_time_outside_the_window_is_422_time_out_of_range_and_records_nothing(
    client: TestClient,
    ingest_key: dict[str, str],
    acme: Any,
    container: Container,
    moment: datetime,
    mode: str,
) -> None:
    before = count_events(container)
    response = MODES[mode](client, ingest_key, usage(f"t-{mode}-{moment.year}", 1, time=moment))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"].endswith("/time_out_of_range")
    assert problem["errors"] == [{"field": "time", "message": problem["detail"]}]
    assert count_events(container) == before


def test_a_time_in_the_future_is_rejected_per_event_and_the_good_events_of_the_batch_are_kept(
    client: TestClient, ingest_key: dict[str, str], acme: Any, container: Container
) -> None:
    tomorrow = container.ledger.now() + timedelta(days=1)
    events = [
        usage("batch-t-1", 1),
        usage("batch-t-2", 1, time=FAR_FUTURE),
        usage("batch-t-3", 1, time=YEAR_ONE),
        usage("batch-t-4", 1, time=tomorrow),
        event("batch-t-5", "customer.updated", {"name": "Acme"}, time=FAR_FUTURE),
        usage("batch-t-6", 1),
    ]
    response = client.post(
        "/v1/events", content=batch_body(events), headers={**ingest_key, "Content-Type": BATCH}
    )
    assert response.status_code == 207, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == [
        "accepted",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
        "accepted",
    ]
    for rejected in results[1:5]:
        assert rejected["code"] == "time_out_of_range"
        assert "time" in rejected["reason"]
    with container.pool.connection() as conn:
        latest: Any = conn.execute("SELECT max(occurred_at) AS t FROM ledger_events").fetchone()
    assert latest["t"] <= container.ledger.now()


def test_a_customer_event_in_the_future_registers_nothing(
    client: TestClient, ingest_key: dict[str, str], container: Container
) -> None:
    before = count_events(container)
    ce = event(
        "cus-future",
        "customer.created",
        {"email": "ops@initech.test", "currency": "EUR"},
        subject="initech",
        time=FAR_FUTURE,
    )
    response = send_structured(client, ingest_key, ce)
    assert response.status_code == 422
    assert response.json()["type"].endswith("/time_out_of_range")
    assert count_events(container) == before


def test_a_time_a_few_seconds_ahead_of_the_ledgers_now_is_accepted(
    client: TestClient, ingest_key: dict[str, str], acme: Any, container: Container
) -> None:
    """Clients whose clocks run a little fast are not refused (the window ends at now + 5 min)."""
    ahead = container.ledger.now() + timedelta(seconds=30)
    response = send_structured(client, ingest_key, usage("slightly-ahead", 1, time=ahead))
    assert response.status_code == 202, response.text


# ---------------------------------------------------------------------------- values


@pytest.mark.parametrize("value", [10**9 + 1, "1000000000.5", 10**20, 2**64, "1e10"], ids=repr)
def test_a_usage_value_beyond_10_to_the_9_is_rejected_with_a_reason_and_the_rest_is_kept(
    client: TestClient, ingest_key: dict[str, str], acme: Any, container: Container, value: Any
) -> None:
    response = client.post(
        "/v1/events",
        content=batch_body([usage("v-ok", 10**9), usage("v-big", value)]),
        headers={**ingest_key, "Content-Type": BATCH},
    )
    assert response.status_code == 207, response.text
    ok, big = response.json()["results"]
    assert ok["status"] in ("accepted", "duplicate")
    assert (big["status"], big["code"]) == ("rejected", "invalid_value")
    assert "10^9" in big["reason"] or "1000000000" in big["reason"]


def test_a_correction_beyond_10_to_the_9_is_rejected_and_the_value_kept(
    client: TestClient, ingest_key: dict[str, str], acme: Any, container: Container
) -> None:
    assert send_structured(client, ingest_key, usage("to-correct", 5)).status_code == 202
    correction = event("fix-huge", "usage.corrected", {"corrects": "to-correct", "value": 10**12})
    response = send_structured(client, ingest_key, correction)
    assert response.status_code == 422
    assert response.json()["type"].endswith("/invalid_value")
    record = container.ledger.repository.get(ids.usage_record_id("saas-1", "to-correct"))
    assert record.value == "5"
