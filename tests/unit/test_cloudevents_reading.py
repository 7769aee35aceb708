"""Reading CloudEvents: the inline attribute check of structured events agrees with the SDK's
`CloudEvent` on what is a valid CloudEvents 1.0 event."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.v1.event import CloudEvent

from ingest.cloudevents import (
    ReadEvent,
    Rejection,
    _attribute_problem,
    _checked,
    _read_plain,
    content_hash,
    read_event,
)

VALID: dict[str, Any] = {
    "specversion": "1.0",
    "id": "evt-1",
    "source": "saas-1",
    "type": "usage.recorded",
    "subject": "acme",
    "time": datetime(2025, 3, 1, tzinfo=UTC),
}


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"specversion": "0.3"},
        {"id": ""},
        {"id": 7},
        {"source": None},
        {"type": ""},
        {"subject": 3},
        {"datacontenttype": "application/json"},
        {"dataschema": "https://example.com/schema"},
        {"tenant": "eu"},
        {"Tenant": "eu"},
        {"tenant_id": "eu"},
        {"averyveryverylongextensionname": "x"},
        {"tenant": {"nested": True}},
    ],
)
def test_inline_attribute_check_agrees_with_the_sdk(change: dict[str, Any]) -> None:
    attributes = {k: v for k, v in {**VALID, **change}.items() if v is not None}
    try:
        CloudEvent(dict(attributes), None)
        sdk_accepts = True
    except BaseCloudEventException:
        sdk_accepts = False
    assert (_attribute_problem(attributes) is None) == sdk_accepts


def test_a_missing_specversion_is_refused_where_the_sdk_would_assume_one() -> None:
    attributes = {k: v for k, v in VALID.items() if k != "specversion"}
    assert _attribute_problem(attributes) is not None


def test_a_structured_event_is_read_with_time_as_utc_and_aliases_resolved() -> None:
    raw = {**VALID, "type": "user.created", "time": "2025-03-01T13:00:00+01:00", "data": {"email": "a@b.co"}}
    read = read_event(raw, 4)
    assert isinstance(read, ReadEvent)
    assert (read.index, read.type, read.time) == (4, "customer.created", datetime(2025, 3, 1, 12, tzinfo=UTC))


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ([1, 2], "invalid_event"),
        ({**VALID, "time": "2025-03-01T13:00:00"}, "invalid_event"),
        ({**VALID, "time": "soon"}, "invalid_event"),
        ({**VALID, "type": "order.placed", "data": {}}, "unknown_type"),
        ({**VALID, "data": "text"}, "invalid_data"),
        ({**VALID, "data_base64": "AAAA"}, "invalid_data"),
        ({**VALID, "data": {"metric": "api\x00calls", "value": 1}}, "invalid_data"),
        ({**VALID, "data": {"tags": [{"k\x00": "v"}]}}, "invalid_data"),
        ({**VALID, "subject": "ac\x00me", "data": {}}, "invalid_data"),
    ],
)
def test_unreadable_events_are_rejections_with_a_code(raw: Any, code: str) -> None:
    if isinstance(raw, dict) and isinstance(raw.get("time"), datetime):
        raw = {**raw, "time": raw["time"].isoformat()}
    read = read_event(raw, 0)
    assert isinstance(read, Rejection)
    assert read.code == code


def test_the_content_hash_ignores_key_order_and_sees_every_value() -> None:
    one = {"id": "1", "source": "s", "data": {"value": 1, "metric": "m"}}
    same = {"data": {"metric": "m", "value": 1}, "source": "s", "id": "1"}
    other = {"id": "1", "source": "s", "data": {"value": 2, "metric": "m"}}
    assert content_hash(one) == content_hash(same) != content_hash(other)


def test_text_that_only_spells_a_nul_escape_is_ordinary_text() -> None:
    read = read_event({**VALID, "time": VALID["time"].isoformat(), "data": {"note": "\\u0000"}}, 0)
    assert isinstance(read, ReadEvent)
    assert read.data == {"note": "\\u0000"}


@pytest.mark.parametrize(
    "time",
    [
        "2025-03-01T13:00:00.123456+01:00",
        "2025-03-01T00:00:00Z",
        "1999-12-31T23:59:59.000001-08:00",
        "2025-03-01T00:00:00.5+00:00",
        None,
    ],
)
@pytest.mark.parametrize("kind", ["usage.recorded", "user.created"])
def test_the_common_shape_is_read_exactly_as_the_general_path_reads_it(time: str | None, kind: str) -> None:
    """Events of the common shape take a shorter path (`_read_plain`); what it reads, the content
    hash included, is what the general path reads: a resend in another mode stays a duplicate."""
    raw: dict[str, Any] = {
        **VALID,
        "type": kind,
        "time": time,
        "data": {"metric": "m", "value": 1.5, "properties": {"a": [1, "x"], "é": None}},
    }
    if time is None:
        del raw["time"]
    attributes = {k: v for k, v in raw.items() if k != "data"}
    if time is not None:
        attributes["time"] = datetime.fromisoformat(time)
    general = _checked(3, raw["id"], attributes, raw["data"], sent=raw)
    plain = _read_plain(raw, 3)
    assert isinstance(general, ReadEvent)
    assert plain == general
    assert read_event(raw, 3) == general
