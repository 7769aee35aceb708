"""The hash chain over the log: an auditor proves nobody rewrote history. Each tampering test
changes the events table as a superuser would, bypassing the immutability trigger, and expects
verification to name the exact position."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from infra import seals
from infra.bootstrap import Container
from infra.settings import DatabaseAddress
from tests.conftest import bearer


@pytest.fixture
def auditor(container: Container) -> dict[str, str]:
    _, raw = container.keys.mint(role="audit", name="auditor")
    return bearer(raw)


@pytest.fixture(autouse=True)
def small_seals(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seals of a few events and reads of a few seals, so that a short history crosses many
    seal and read boundaries."""
    monkeypatch.setattr(seals, "SEGMENT_EVENTS", 4)
    monkeypatch.setattr(seals, "CHUNK_EVENTS", 10)


def _register(client: TestClient, admin: dict[str, str], count: int, prefix: str = "c") -> list[int]:
    positions = []
    for i in range(count):
        body = {"external_id": f"{prefix}{i}", "email": f"{prefix}{i}@example.com", "currency": "EUR"}
        response = client.post("/v1/customers", json=body, headers=admin)
        assert response.status_code == 201, response.text
        positions.append(response.json()["position"])
    return positions


@pytest.fixture
def superuser(container: Container) -> Iterator[psycopg.Connection[Any]]:
    """A connection that bypasses the events table's triggers, as a database superuser can."""
    conninfo = DatabaseAddress(str(container.settings.database_url)).conninfo()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"SET search_path TO {container.settings.database_schema}")
        conn.execute("SET session_replication_role = replica")
        yield conn


def _verify(client: TestClient, auditor: dict[str, str]) -> Any:
    response = client.get("/v1/audit/verify", headers=auditor)
    assert response.status_code == 200, response.text
    return response.json()


def test_an_untouched_log_verifies_and_new_history_is_sealed_before_verifying(
    client: TestClient, admin: dict[str, str], auditor: dict[str, str], container: Container
) -> None:
    first = _register(client, admin, 9)
    assert seals.seal(container.pool).position == first[-1]
    later = _register(client, admin, 6, prefix="later")

    result = _verify(client, auditor)

    assert result["ok"] is True
    assert result["events_checked"] == later[-1]
    assert result["sealed_position"] == later[-1]
    assert result["first_bad_position"] is None and result["problem"] is None
    assert len(result["sealed_hash"]) == 64


def test_verification_needs_an_audit_key(client: TestClient, reader: dict[str, str]) -> None:
    assert client.get("/v1/audit/verify", headers=reader).status_code == 403
    assert client.get("/v1/audit/verify").status_code == 401


def test_altered_payload_is_detected_at_its_position(
    client: TestClient,
    admin: dict[str, str],
    auditor: dict[str, str],
    container: Container,
    superuser: psycopg.Connection[Any],
) -> None:
    positions = _register(client, admin, 12)
    seals.seal(container.pool)
    target = positions[6]

    superuser.execute(
        "UPDATE ledger_events SET state = convert_to(replace(convert_from(state, 'UTF8'),"
        " 'c6@example.com', 'c6@evil.example'), 'UTF8') WHERE notification_id = %s",
        (target,),
    )

    result = _verify(client, auditor)
    assert result["ok"] is False
    assert result["first_bad_position"] == target
    assert result["problem"] == "altered"
    assert result["events_checked"] == target - 1


def test_altered_envelope_column_is_detected_too(
    client: TestClient,
    admin: dict[str, str],
    auditor: dict[str, str],
    container: Container,
    superuser: psycopg.Connection[Any],
) -> None:
    positions = _register(client, admin, 5)
    seals.seal(container.pool)

    superuser.execute(
        "UPDATE ledger_events SET occurred_at = occurred_at - interval '1 day' WHERE notification_id = %s",
        (positions[2],),
    )

    result = _verify(client, auditor)
    assert (result["problem"], result["first_bad_position"]) == ("altered", positions[2])


def test_deleted_event_is_detected_at_its_position(
    client: TestClient,
    admin: dict[str, str],
    container: Container,
    superuser: psycopg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from infra.cli import app

    positions = _register(client, admin, 12)
    seals.seal(container.pool)
    with container.pool.connection() as conn:
        row: Any = conn.execute("SELECT min(position) AS p FROM audit_seals WHERE position > 4").fetchone()
    target = row["p"]  # the last event of a seal: the boundary case

    superuser.execute("DELETE FROM ledger_events WHERE notification_id = %s", (target,))

    monkeypatch.setenv("LEDGER_DATABASE_URL", str(container.settings.database_url))
    monkeypatch.setenv("LEDGER_DATABASE_SCHEMA", container.settings.database_schema)
    result = CliRunner().invoke(app, ["verify"])
    assert result.exit_code == 1, result.output
    assert f"FAILED at position {target}: removed" in result.output
    assert positions[-1] > target


def test_inserted_event_is_detected_at_its_position(
    client: TestClient,
    admin: dict[str, str],
    auditor: dict[str, str],
    container: Container,
    superuser: psycopg.Connection[Any],
) -> None:
    _register(client, admin, 5)
    # An append that rolled back leaves its position unused: a gap a forger could fill.
    with superuser.transaction(force_rollback=True):
        superuser.execute(
            "INSERT INTO ledger_events (originator_id, originator_version, topic, state)"
            " VALUES (gen_random_uuid(), 1, 'x', '\\x7b7d')"
        )
    after_gap = _register(client, admin, 6, prefix="d")
    gap = after_gap[0] - 1
    seals.seal(container.pool)

    superuser.execute(
        "INSERT INTO ledger_events (notification_id, originator_id, originator_version, topic, state,"
        " event_type, occurred_at, recorded_at, customer_id, source, actor, schema_version)"
        " SELECT %s, gen_random_uuid(), 1, topic, state, event_type, occurred_at, recorded_at,"
        " customer_id, source, actor, schema_version FROM ledger_events WHERE notification_id = %s",
        (gap, after_gap[0]),
    )

    result = _verify(client, auditor)
    assert result["ok"] is False
    assert result["first_bad_position"] == gap
    assert result["problem"] == "inserted"


def test_seals_cannot_be_rewritten(container: Container, client: TestClient, admin: dict[str, str]) -> None:
    _register(client, admin, 2)
    seals.seal(container.pool)
    with container.pool.connection() as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("UPDATE audit_seals SET hash = '\\x00'")
