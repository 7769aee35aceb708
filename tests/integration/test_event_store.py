"""The event store keeps what it is given, with its envelope, and the database refuses rewrites."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from application import commands as c
from infra.bootstrap import Container
from tests.conftest import count_events

MOMENT = datetime(2025, 3, 1, 12, tzinfo=UTC)


def _register(container: Container, external_id: str = "acme") -> Any:
    ctx = c.CommandContext(occurred_at=MOMENT, source="api", actor="key-1", reason="onboarding")
    return container.ledger.register_customer(
        c.RegisterCustomer(external_id=external_id, email="billing@acme.io", currency="EUR"), ctx
    )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_events SET state = convert_to('{}', 'UTF8')",
        "DELETE FROM ledger_events",
        "TRUNCATE ledger_events",
    ],
)
def test_database_refuses_to_rewrite_stored_events(container: Container, statement: str) -> None:
    _register(container)
    with container.pool.connection() as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="immutable"):
            conn.execute(statement)
        conn.rollback()
    assert count_events(container) == 1


def test_stored_event_carries_its_envelope(container: Container) -> None:
    outcome = _register(container)
    with container.pool.connection() as conn:
        row: Any = conn.execute("SELECT * FROM events WHERE position = %s", (outcome.position,)).fetchone()
    assert row["type"] == "Customer.Registered"
    assert row["stream_id"] == outcome.resource_id
    assert row["version"] == 1
    assert row["occurred_at"] == MOMENT
    assert row["recorded_at"] > MOMENT
    assert row["customer_id"] == outcome.resource_id
    assert row["source"] == "api"
    assert row["actor"] == "key-1"
    assert row["reason"] == "onboarding"
    assert row["schema_version"] == 1
    assert row["payload"]["external_id"] == "acme"


def test_positions_follow_commit_order(container: Container) -> None:
    positions = [_register(container, f"c{i}").position for i in range(5)]
    assert positions == sorted(positions)
    assert len(set(positions)) == 5


def test_aggregate_is_rebuilt_from_its_events(container: Container) -> None:
    outcome = _register(container)
    ctx = c.CommandContext(occurred_at=MOMENT)
    container.ledger.update_customer(c.UpdateCustomer(outcome.resource_id, name="ACME SAS"), ctx)
    customer = container.ledger.repository.get(outcome.resource_id)
    assert customer.name == "ACME SAS"
    assert customer.registered_at == MOMENT
    assert customer.version == 2
