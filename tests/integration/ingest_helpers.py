"""Builders for ingest tests: CloudEvents made with the `cloudevents` SDK, as a client would."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cloudevents.core.bindings.http import to_binary_event, to_structured_event
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from fastapi.testclient import TestClient

MOMENT = datetime(2025, 3, 1, 12, tzinfo=UTC)
FORMAT = JSONFormat()
BATCH = "application/cloudevents-batch+json"


def event(
    event_id: str,
    event_type: str = "usage.recorded",
    data: dict[str, Any] | None = None,
    *,
    subject: str | None = "acme",
    source: str = "saas-1",
    time: datetime = MOMENT,
) -> CloudEvent:
    attributes: dict[str, Any] = {"id": event_id, "source": source, "type": event_type, "time": time}
    if subject is not None:
        attributes["subject"] = subject
    if data is None:
        data = {"metric": "api_calls", "value": 1}
    return CloudEvent(attributes, data)


def usage(event_id: str, value: Any = 1, **kwargs: Any) -> CloudEvent:
    return event(event_id, "usage.recorded", {"metric": "api_calls", "value": value}, **kwargs)


def structured(ce: CloudEvent) -> tuple[bytes, dict[str, str]]:
    message = to_structured_event(ce)
    return message.body, dict(message.headers)


def binary(ce: CloudEvent) -> tuple[bytes, dict[str, str]]:
    message = to_binary_event(ce)
    return message.body, dict(message.headers)


def batch_body(events: list[CloudEvent]) -> bytes:
    return b"[" + b",".join(FORMAT.write(e) for e in events) + b"]"


def post_structured(client: TestClient, key: dict[str, str], ce: CloudEvent) -> Any:
    body, headers = structured(ce)
    return client.post("/v1/events", content=body, headers={**key, **headers})


def post_batch(
    client: TestClient, key: dict[str, str], events: list[CloudEvent], content_type: str = BATCH
) -> Any:
    return client.post(
        "/v1/events", content=batch_body(events), headers={**key, "Content-Type": content_type}
    )


def register(client: TestClient, admin: dict[str, str], external_id: str = "acme") -> Any:
    body = {"external_id": external_id, "email": f"{external_id}@example.com", "currency": "EUR"}
    response = client.post("/v1/customers", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()
