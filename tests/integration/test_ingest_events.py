"""POST /v1/events: CloudEvents from SaaS systems, recorded exactly once per (source, id).
The client side is the `cloudevents` SDK, as a sender would use it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from domain import ids
from domain.usage import UsageRecord
from infra.bootstrap import Container, bootstrap
from infra.eventstore import LedgerMapper, current_envelope
from infra.settings import Settings
from tests.conftest import bearer, count_events
from tests.integration.ingest_helpers import (
    MOMENT,
    batch_body,
    binary,
    event,
    post_batch,
    post_structured,
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


def results(response: Any) -> list[tuple[str, str]]:
    return [(r["id"], r["status"]) for r in response.json()["results"]]


def codes(response: Any) -> list[str | None]:
    return [r.get("code") for r in response.json()["results"]]


# ---------------------------------------------------------------------------- exactly once


def test_structured_usage_event_is_recorded_once_and_a_resend_is_a_duplicate(
    client: TestClient, ingest_key: dict[str, str], acme: Any, container: Container
) -> None:
    before = count_events(container)
    first = post_structured(client, ingest_key, usage("evt-1", 42))
    assert first.status_code == 202, first.text
    assert results(first) == [("evt-1", "accepted")]
    again = post_structured(client, ingest_key, usage("evt-1", 42))
    assert again.status_code == 202
    assert results(again) == [("evt-1", "duplicate")]
    assert again.json()["position"] == first.json()["position"]
    assert count_events(container) == before + 1


def test_same_key_with_another_payload_is_rejected_as_a_conflict(
    client: TestClient, ingest_key: dict[str, str], acme: Any, container: Container
) -> None:
    post_structured(client, ingest_key, usage("evt-1", 42))
    before = count_events(container)
    changed = post_structured(client, ingest_key, usage("evt-1", 43))
    assert changed.status_code == 409
    assert changed.headers["content-type"] == "application/problem+json"
    assert changed.json()["type"].endswith("/conflict")
    in_batch = post_batch(client, ingest_key, [usage("evt-1", 43)])
    assert in_batch.status_code == 207
    assert results(in_batch) == [("evt-1", "rejected")]
    assert codes(in_batch) == ["conflict"]
    assert count_events(container) == before


def test_the_key_is_per_source(client: TestClient, ingest_key: dict[str, str], acme: Any) -> None:
    post_structured(client, ingest_key, usage("evt-1"))
    other_source = post_structured(client, ingest_key, usage("evt-1", source="saas-2"))
    assert results(other_source) == [("evt-1", "accepted")]


def test_recorded_usage_rebuilds_into_the_aggregate_the_domain_would_have_made(
    client: TestClient, ingest_key: dict[str, str], acme: Any, container: Container
) -> None:
    sent = event(
        "evt-7",
        data={"metric": "storage_gb", "value": "12.50", "properties": {"region": "eu", "tier": 2}},
        time=MOMENT,
    )
    response = post_structured(client, ingest_key, sent)
    assert response.status_code == 202
    record_id = ids.usage_record_id("saas-1", "evt-7")
    stored = container.ledger.repository.get(record_id)
    intended = UsageRecord.record(
        record_id=record_id,
        customer_id=ids.customer_id("acme"),
        metric="storage_gb",
        value="12.50",
        idempotency_key="evt-7",
        properties={"region": "eu", "tier": 2},
        occurred_at=MOMENT,
        source="saas-1",
        content_hash=stored.content_hash,
    )
    (domain_event,) = intended.collect_events()
    assert isinstance(stored, UsageRecord)
    assert {k: v for k, v in vars(stored).items() if not k.startswith("_")} == {
        k: v for k, v in vars(intended).items() if not k.startswith("_")
    }
    assert (stored.version, stored.value) == (1, "12.5")
    # The row the fast path wrote is byte for byte what the mapper writes for that event.
    with container.pool.connection() as conn:
        row: Any = conn.execute(
            "SELECT topic, state, event_type, occurred_at, customer_id, source, actor"
            " FROM ledger_events WHERE originator_id = %s",
            (record_id,),
        ).fetchone()
    token = current_envelope.set(None)
    try:
        mapped = LedgerMapper().to_stored_event(domain_event)
    finally:
        current_envelope.reset(token)
    state = orjson.loads(row["state"])
    expected = orjson.loads(mapped.state)
    expected["timestamp"] = state["timestamp"]  # when each was made
    assert list(state) == list(expected)
    assert state == expected
    assert (row["topic"], row["event_type"]) == (mapped.topic, "UsageRecord.Recorded")
    assert (row["occurred_at"], row["customer_id"], row["source"]) == (
        MOMENT,
        ids.customer_id("acme"),
        "ingest",
    )
    assert row["actor"] is not None


# ---------------------------------------------------------------------------- batches


def test_batch_answers_one_result_per_event_and_bad_events_never_drop_good_ones(
    client: TestClient, ingest_key: dict[str, str], acme: Any, container: Container
) -> None:
    before = count_events(container)
    sent = [
        usage("a-1", 1),
        event("a-2", "invoice.created"),
        usage("a-3", 3, subject="nobody"),
        event("a-4", "usage.recorded", {"value": 2}),
        usage("a-5", -1),
        usage("a-6", 6),
        usage("a-1", 1),
    ]
    response = post_batch(client, ingest_key, sent)
    assert response.status_code == 207, response.text
    assert results(response) == [
        ("a-1", "accepted"),
        ("a-2", "rejected"),
        ("a-3", "rejected"),
        ("a-4", "rejected"),
        ("a-5", "rejected"),
        ("a-6", "accepted"),
        ("a-1", "duplicate"),
    ]
    assert codes(response) == [
        None,
        "unknown_type",
        "unknown_customer",
        "missing_field",
        "invalid_value",
        None,
        None,
    ]
    assert all(r["reason"] for r in response.json()["results"] if r["status"] == "rejected")
    assert count_events(container) == before + 2


def test_all_good_batch_answers_202_with_the_position_of_its_last_event(
    client: TestClient, ingest_key: dict[str, str], acme: Any, reader: dict[str, str]
) -> None:
    response = post_batch(client, ingest_key, [usage(f"b-{n}", n) for n in range(50)])
    assert response.status_code == 202
    assert [status for _, status in results(response)] == ["accepted"] * 50
    position = response.json()["position"]
    # read-your-writes: the position is one a query can wait for
    read = client.get("/v1/customers", params={"min_position": position}, headers=reader)
    assert read.status_code == 200


def test_plain_json_array_is_a_batch(client: TestClient, ingest_key: dict[str, str], acme: Any) -> None:
    response = post_batch(client, ingest_key, [usage("j-1"), usage("j-2")], content_type="application/json")
    assert response.status_code == 202
    assert results(response) == [("j-1", "accepted"), ("j-2", "accepted")]


def test_binary_mode_event_is_recorded(client: TestClient, ingest_key: dict[str, str], acme: Any) -> None:
    body, headers = binary(usage("bin-1", 5))
    response = client.post("/v1/events", content=body, headers={**ingest_key, **headers})
    assert response.status_code == 202, response.text
    assert results(response) == [("bin-1", "accepted")]
    again = client.post("/v1/events", content=body, headers={**ingest_key, **headers})
    assert results(again) == [("bin-1", "duplicate")]


def test_customer_events_and_aliases_register_and_update_customers(
    client: TestClient, ingest_key: dict[str, str], container: Container
) -> None:
    sent = [
        event(
            "c-1",
            "user.created",
            {"email": "ops@globex.io", "name": "Globex", "currency": "USD"},
            subject="globex",
        ),
        usage("c-2", 10, subject="globex"),
        event(
            "c-3", "customer.updated", {"name": "Globex Corp", "metadata": {"plan": "big"}}, subject="globex"
        ),
        event("c-4", "user.updated", {"name": "Nobody"}, subject="nobody"),
    ]
    response = post_batch(client, ingest_key, sent)
    assert response.status_code == 207
    assert results(response) == [
        ("c-1", "accepted"),
        ("c-2", "accepted"),
        ("c-3", "accepted"),
        ("c-4", "rejected"),
    ]
    assert codes(response)[3] == "unknown_customer"
    customer = container.ledger.repository.get(ids.customer_id("globex"))
    assert (customer.email, customer.name, customer.currency) == ("ops@globex.io", "Globex Corp", "USD")
    assert customer.metadata == {"plan": "big"}
    resent = post_batch(client, ingest_key, sent[:1])
    assert results(resent) == [("c-1", "duplicate")]


def test_usage_correction_replaces_the_value_once(
    client: TestClient, ingest_key: dict[str, str], acme: Any, container: Container
) -> None:
    post_structured(client, ingest_key, usage("u-1", 100))
    correction = event("u-1-fix", "usage.corrected", {"corrects": "u-1", "value": 90})
    first = post_structured(client, ingest_key, correction)
    assert results(first) == [("u-1-fix", "accepted")]
    again = post_structured(client, ingest_key, correction)
    assert results(again) == [("u-1-fix", "duplicate")]
    record = container.ledger.repository.get(ids.usage_record_id("saas-1", "u-1"))
    assert (record.value, record.version) == ("90", 2)
    unknown = post_structured(
        client, ingest_key, event("u-2-fix", "usage.corrected", {"corrects": "u-2", "value": 1})
    )
    assert unknown.status_code == 422
    assert unknown.json()["type"].endswith("/unknown_usage")


def test_time_is_occurred_at_and_events_carry_the_ingest_envelope(
    client: TestClient, ingest_key: dict[str, str], acme: Any, container: Container
) -> None:
    late = MOMENT - timedelta(days=3)
    response = post_structured(client, ingest_key, usage("t-1", time=late))
    with container.pool.connection() as conn:
        row: Any = conn.execute(
            "SELECT occurred_at, source, actor, customer_id, correlation_id FROM events WHERE position = %s",
            (response.json()["position"],),
        ).fetchone()
    assert row["occurred_at"] == late
    assert row["source"] == "ingest"
    assert row["customer_id"] == ids.customer_id("acme")
    assert row["actor"] and row["correlation_id"]


# ---------------------------------------------------------------------------- keys and settings


def test_a_scoped_key_writes_its_own_customers_events_only(
    client: TestClient, admin: dict[str, str], acme: Any, container: Container
) -> None:
    minted = client.post(
        "/v1/api-keys",
        json={"role": "ingest", "name": "on-prem acme", "customer_id": acme["id"]},
        headers=admin,
    ).json()
    scoped = bearer(minted["key"])
    register(client, admin, "initech")
    own = post_structured(client, scoped, usage("s-1", subject=None))
    assert results(own) == [("s-1", "accepted")]
    named = post_structured(client, scoped, usage("s-2", subject="acme"))
    assert results(named) == [("s-2", "accepted")]
    before = count_events(container)
    other = post_batch(client, scoped, [usage("s-3", subject="acme"), usage("s-4", subject="initech")])
    assert other.status_code == 403
    assert other.json()["type"].endswith("/forbidden")
    assert count_events(container) == before


def test_keys_without_the_ingest_role_are_refused(
    client: TestClient, reader: dict[str, str], acme: Any
) -> None:
    assert post_structured(client, reader, usage("r-1")).status_code == 403
    assert post_structured(client, {}, usage("r-1")).status_code == 401


@pytest.fixture
def auto_creating(settings: Settings, database_url: str) -> Iterator[TestClient]:
    built = bootstrap(
        settings.model_copy(update={"ingest_auto_create_customers": True, "ingest_default_currency": "EUR"}),
        database_url,
        run_projection=False,
    )
    try:
        with TestClient(create_app(lambda: built), raise_server_exceptions=False) as test_client:
            yield test_client
    finally:
        built.close()


def test_usage_for_an_unknown_customer_registers_it_when_the_setting_allows(
    auto_creating: TestClient, container: Container
) -> None:
    app_container = auto_creating.app.state.container  # type: ignore[attr-defined]
    _, raw = app_container.keys.mint(role="ingest", name="saas")
    sent = [usage("n-1", subject="newco"), usage("n-2", subject="newco")]
    response = post_batch(auto_creating, bearer(raw), sent)
    assert results(response) == [("n-1", "accepted"), ("n-2", "accepted")]
    customer = app_container.ledger.repository.get(ids.customer_id("newco"))
    assert (customer.external_id, customer.currency) == ("newco", "EUR")
    assert customer.metadata["created_by"] == "ingest"


# ---------------------------------------------------------------------------- bad requests


def test_bad_requests_are_4xx_and_store_nothing(
    client: TestClient, ingest_key: dict[str, str], acme: Any, container: Container
) -> None:
    before = count_events(container)
    body, _ = structured(usage("x-1"))
    cases = [
        (415, {"Content-Type": "text/plain"}, body),
        (415, {}, body),
        (400, {"Content-Type": "application/cloudevents+json"}, b"{not json"),
        (400, {"Content-Type": "application/cloudevents-batch+json"}, body),
        (400, {"Content-Type": "application/cloudevents+json"}, b"[]"),
        (400, {"Content-Type": "application/json"}, b"42"),
        (
            413,
            {"Content-Type": "application/cloudevents-batch+json"},
            batch_body([usage(f"y-{n}") for n in range(1001)]),
        ),
        (413, {"Content-Type": "application/cloudevents-batch+json"}, b"[" + b" " * (5 * 1024 * 1024) + b"]"),
    ]
    for status, headers, content in cases:
        response = client.post("/v1/events", content=content, headers={**ingest_key, **headers})
        assert response.status_code == status, (status, headers, response.text[:200])
        assert response.headers["content-type"] == "application/problem+json"
    assert count_events(container) == before


def test_a_single_event_that_cannot_be_read_is_a_422_problem(
    client: TestClient, ingest_key: dict[str, str], acme: Any
) -> None:
    no_source = b'{"specversion": "1.0", "id": "z-1", "type": "usage.recorded", "data": {}}'
    response = client.post(
        "/v1/events",
        content=no_source,
        headers={**ingest_key, "Content-Type": "application/cloudevents+json"},
    )
    assert response.status_code == 422
    assert response.json()["type"].endswith("/invalid_event")
    bad_time = (
        b'[{"specversion": "1.0", "id": "z-2", "source": "s", "type": "usage.recorded", "time": "yesterday"}]'
    )
    response = client.post(
        "/v1/events",
        content=bad_time,
        headers={**ingest_key, "Content-Type": "application/cloudevents-batch+json"},
    )
    assert response.status_code == 207
    assert response.json()["results"] == [
        {
            "id": "z-2",
            "status": "rejected",
            "code": "invalid_event",
            "reason": "time 'yesterday' is not RFC 3339",
        }
    ]
