"""Set-based apply writes what event-by-event apply writes: random histories (backdated
subscriptions, invoices, payments, voids, usage) rebuilt once one event per transaction (each
statement on its own) and once in one batch (statements grouped into multi-row ones) give the
same rows, and the same as live projection."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings

from infra.bootstrap import CORE_PROJECTION, Container
from projections import replay as replay_module
from projections.replay import replay
from projections.runner import head_position, wait_for_position
from tests.conftest import read_model_rows
from tests.integration.test_metrics_replay import _play, operations


def _difference(one: dict[str, list[Any]], other: dict[str, list[Any]]) -> dict[str, Any]:
    return {
        table: ([r for r in rows if r not in other[table]], [r for r in other[table] if r not in rows])
        for table, rows in one.items()
        if rows != other[table]
    }


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations)
@example(  # two customers' items changed and removed in one batch: one multi-row statement each
    [
        ("subscribe", 0, 1, 1),
        ("subscribe", 1, 1, 1),
        ("add_item", 0, 3, 1),
        ("add_item", 1, 3, 2),
        ("item_quantity", 0, 6, 3),
        ("item_quantity", 1, 6, 2),
        ("remove_item", 0, 9, 1),
        ("remove_item", 1, 9, 1),
    ]
)
def test_one_batch_set_based_gives_the_rows_of_one_event_at_a_time(
    container: Container, ops: list[tuple[str, int, int, int]]
) -> None:
    _play(container, ops)
    position = head_position(container.pool)
    container.wake_projection()
    assert wait_for_position(container.pool, CORE_PROJECTION, position, 30)
    live = read_model_rows(container)
    conninfo, schema = container.address.conninfo(), container.settings.database_schema

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(replay_module, "BATCH", 1)  # every event alone: its statements one by one
        replay(conninfo, schema, CORE_PROJECTION, workers=1)
    one_by_one = read_model_rows(container)
    replay(conninfo, schema, CORE_PROJECTION, workers=1)  # the whole log in one set-based batch
    together = read_model_rows(container)

    assert _difference(one_by_one, together) == {}
    assert _difference(live, together) == {}
