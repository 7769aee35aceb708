"""`ledger sql` and `ledger export --parquet DIR`, run as a user would (typer's runner), against
the ledger's schema of a real PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from application import commands as c
from infra.bootstrap import CORE_PROJECTION, Container
from infra.cli import app
from projections.runner import head_position, wait_for_position


@pytest.fixture
def ledger_env(container: Container, monkeypatch: pytest.MonkeyPatch) -> Container:
    monkeypatch.setenv("LEDGER_DATABASE_URL", str(container.settings.database_url))
    monkeypatch.setenv("LEDGER_DATABASE_SCHEMA", container.settings.database_schema)
    return container


def register(container: Container, *external_ids: str) -> int:
    context = c.CommandContext(occurred_at=datetime.now(UTC), actor="tests")
    position = 0
    for external_id in external_ids:
        outcome = container.ledger.register_customer(
            c.RegisterCustomer(external_id=external_id, email=f"{external_id}@example.com", currency="EUR"),
            context,
        )
        position = outcome.position
    container.wake_projection()
    assert wait_for_position(container.pool, CORE_PROJECTION, position, 10)
    return position


def test_ledger_sql_prints_the_answer_as_a_table(ledger_env: Container) -> None:
    register(ledger_env, "acme", "globex")
    result = CliRunner().invoke(
        app, ["sql", "SELECT external_id, currency FROM customers ORDER BY external_id"]
    )
    assert result.exit_code == 0, result.output
    assert "external_id" in result.stdout and "currency" in result.stdout
    assert result.stdout.index("acme") < result.stdout.index("globex")
    assert "2 rows" in result.stdout


def test_ledger_sql_writes_csv_json_and_parquet(ledger_env: Container, tmp_path: Path) -> None:
    register(ledger_env, "acme")
    sql = "SELECT external_id, currency FROM customers"
    runner = CliRunner()

    csv = runner.invoke(app, ["sql", sql, "--format", "csv"])
    assert csv.exit_code == 0, csv.output
    assert csv.stdout == "external_id,currency\nacme,EUR\n"

    answer = runner.invoke(app, ["sql", sql, "--format", "json", "--output", str(tmp_path / "a.json")])
    assert answer.exit_code == 0, answer.output
    body = json.loads((tmp_path / "a.json").read_text())
    assert body["rows"] == [["acme", "EUR"]] and body["truncated"] is False

    parquet = runner.invoke(app, ["sql", sql, "--format", "parquet", "--output", str(tmp_path / "a.parquet")])
    assert parquet.exit_code == 0, parquet.output
    assert pq.read_table(tmp_path / "a.parquet").to_pylist() == [{"external_id": "acme", "currency": "EUR"}]

    no_file = runner.invoke(app, ["sql", sql, "--format", "parquet"])
    assert no_file.exit_code != 0 and "--output" in no_file.output


def test_ledger_sql_refuses_what_is_not_a_read_with_a_clear_error(ledger_env: Container) -> None:
    for sql, said in (
        ("COPY (SELECT 1) TO '/tmp/leak.csv'", "COPY statements are not allowed"),
        ("SELECT * FROM read_csv('/etc/passwd')", "file, network and extension access is disabled"),
        ("SET threads = 1", "SET statements are not allowed"),
    ):
        result = CliRunner().invoke(app, ["sql", sql])
        assert result.exit_code == 2
        assert said in result.stderr
        assert "Traceback" not in result.output


def test_ledger_sql_stops_a_slow_query_at_its_timeout(ledger_env: Container) -> None:
    result = CliRunner().invoke(
        app,
        ["sql", "SELECT count(*) FROM range(1000000000000) t(i) WHERE hash(i) % 7 = 3", "--timeout", "0.5"],
    )
    assert result.exit_code == 2
    assert "query_timeout" in result.stderr


def test_export_writes_events_by_recording_day_and_then_only_what_is_new(
    ledger_env: Container, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    register(ledger_env, "acme", "globex")
    first = CliRunner().invoke(app, ["export", "--parquet", str(lake)])
    assert first.exit_code == 0, first.output
    head = head_position(ledger_env.pool)
    assert f"{head} new events" in first.stdout
    today = datetime.now(UTC).date().isoformat()
    assert [p.parent.name for p in (lake / "events").rglob("*.parquet")] == [f"day={today}"]
    assert json.loads((lake / "manifest.json").read_text())["position"] == head

    register(ledger_env, "initech")
    second = CliRunner().invoke(app, ["export", "--parquet", str(lake)])
    assert second.exit_code == 0, second.output
    new_head = head_position(ledger_env.pool)
    assert f"{new_head - head} new events (positions {head + 1}..{new_head})" in second.stdout
    assert len(list((lake / "events").rglob("*.parquet"))) == 2

    events = ds.dataset(str(lake / "events"), format="parquet").to_table()
    positions = sorted(events["position"].to_pylist())
    assert positions == list(range(1, new_head + 1))  # every event once, none twice
    customers = pq.read_table(lake / "read_models" / "rm_customers.parquet")
    assert sorted(customers["external_id"].to_pylist()) == ["acme", "globex", "initech"]

    # An analyst queries the export without any database.
    answer = CliRunner().invoke(
        app,
        [
            "sql",
            "--parquet",
            str(lake),
            "--format",
            "csv",
            "SELECT count(*) AS n, max(position) AS head FROM events",
        ],
    )
    assert answer.exit_code == 0, answer.output
    assert answer.stdout == f"n,head\n{new_head},{new_head}\n"


def test_an_interrupted_export_is_finished_by_the_next_one(ledger_env: Container, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    register(ledger_env, "acme")
    assert CliRunner().invoke(app, ["export", "--parquet", str(lake)]).exit_code == 0
    head = head_position(ledger_env.pool)
    # Files an export wrote before it was killed, ahead of the manifest's position.
    stray = lake / "events" / "day=2099-01-01" / f"part-{head + 1:012d}-{head + 9:012d}.parquet"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"not parquet")
    register(ledger_env, "globex")
    assert CliRunner().invoke(app, ["export", "--parquet", str(lake)]).exit_code == 0
    assert not stray.exists()
    events = ds.dataset(str(lake / "events"), format="parquet").to_table()
    assert sorted(events["position"].to_pylist()) == list(range(1, head_position(ledger_env.pool) + 1))


def test_duckdb_works_within_the_memory_limit_of_the_settings(
    ledger_env: Container, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    register(ledger_env, "acme")
    monkeypatch.setenv("LEDGER_ANALYTICS_MEMORY_LIMIT", "64MB")
    monkeypatch.setenv("LEDGER_DATA_DIR", str(tmp_path))
    sql = "SELECT current_setting('memory_limit') AS memory_limit, count(*) AS customers FROM customers"
    result = CliRunner().invoke(app, ["sql", sql, "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "memory_limit,customers\n61.0 MiB,1\n"  # 64 MB, as DuckDB writes it
    assert not any((tmp_path / "analytics-tmp").iterdir())  # its spill directory, removed on close
