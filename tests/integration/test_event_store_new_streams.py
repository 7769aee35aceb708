"""The event store's append of new streams (ingest's fast path): existing streams are skipped
under the append lock, and what it appends reads back as any other stored event."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

import orjson
import pytest

from infra.bootstrap import Container
from infra.eventstore import NewStreamRow
from tests.conftest import count_events

MOMENT = datetime(2025, 3, 1, tzinfo=UTC)


def row(stream_id: UUID, mark: str = "a", version: int = 1) -> NewStreamRow:
    state = orjson.dumps({"content_hash": mark})
    return NewStreamRow(
        stream_id,
        version,
        "tests:Thing.Happened",
        state,
        "Thing.Happened",
        MOMENT,
        None,
        "ingest",
        "k",
        None,
        None,
        None,
        1,
    )


def test_new_streams_are_appended_once_and_existing_ones_are_reported_with_their_state(
    container: Container,
) -> None:
    store = container.ledger.store
    a, b, c = uuid4(), uuid4(), uuid4()
    first = store.append_new_streams([row(a), row(b), row(a, "again")])
    assert set(first.positions) == {a, b}
    assert first.existing == {}
    assert first.positions[a] < first.positions[b]  # in the order given
    second = store.append_new_streams([row(b, "other"), row(c)])
    assert set(second.positions) == {c}
    position, state = second.existing[b]
    assert position == first.positions[b]
    assert orjson.loads(state) == {"content_hash": "a"}  # the first content stays
    assert second.positions[c] > first.positions[b]
    assert count_events(container) == 3
    assert store.existing_streams([a, c, uuid4()]).keys() == {a, c}


def test_only_first_events_of_streams_go_through_this_append(container: Container) -> None:
    with pytest.raises(ValueError, match="version 1"):
        container.ledger.store.append_new_streams([row(uuid4(), version=2)])
    assert count_events(container) == 0


def test_a_failed_append_leaves_nothing_and_the_next_one_works(container: Container) -> None:
    store = container.ledger.store
    broken = row(uuid4())._replace(occurred_at=None, source=None)  # type: ignore[arg-type]
    with pytest.raises(Exception, match="source"):
        store.append_new_streams([row(uuid4()), broken])
    assert count_events(container) == 0
    assert len(store.append_new_streams([row(uuid4())]).positions) == 1
