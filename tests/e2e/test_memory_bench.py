"""bench/memory.py keeps working: on a tiny history it starts `ledger up`, follows its process
tree's resident memory through the catch-up and an analytics query, and reports it beside the
history's size."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from application.ledger import Ledger
from application.simulation import Simulation
from infra.database import ensure_schema, event_store_env
from infra.settings import DatabaseAddress
from tests.bench_report import reported_rows

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def test_the_memory_benchmark_follows_ledger_up_through_catch_up_and_analytics(
    database_url: str, tmp_path: Path
) -> None:
    address = DatabaseAddress(database_url)
    schema = "memory_bench"
    ensure_schema(address, schema)
    ledger = Ledger(env=event_store_env(address, schema, 2))
    try:
        Simulation(ledger, customers=10, months=2, seed=5, until=datetime(2025, 6, 1, tzinfo=UTC)).run()
    finally:
        ledger.close()
    out = tmp_path / "memory.json"
    done = subprocess.run(
        [sys.executable, "bench/memory.py", "--database-url", database_url, "--schema", schema,
         "--seconds", "120", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(out.read_text())
    assert figures["caught_up"] and figures["analytics_answered"]
    # The clock of `ledger up` records what fell due since the history ended: more, never less.
    assert figures["applied_position"] >= figures["history_events"] > 50
    assert figures["peak_rss_bytes"] >= figures["end_rss_bytes"] > 0
    # Shared pages count once in the proportional sizes: never more than the summed RSS.
    assert 0 < figures["peak_pss_bytes"] <= figures["peak_rss_bytes"]
    assert figures["under_1_gib"] == (figures["peak_pss_bytes"] < 1024**3)
    (row,) = reported_rows("memory", out)
    assert f"peak {figures['peak_pss_bytes'] / 1024**2:,.0f} MiB PSS" in row
    assert figures["history_bytes_in_postgresql"] > 0
    assert "peak RSS" in done.stdout
