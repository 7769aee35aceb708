"""bench/ingest.py and bench/commands.py keep working: on a tiny input, against a plain `ledger up`
they start themselves, they measure every figure they promise beside the raw PostgreSQL reference,
and check on the way that every event and command was recorded exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.bench_report import reported_rows

REPO = Path(__file__).resolve().parents[2]


def _run(script: str, database_url: str, out: Path, *options: str) -> str:
    done = subprocess.run(
        [sys.executable, script, "--database-url", database_url, "--json", str(out), *options],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_ingest_benchmark_measures_batches_single_events_and_the_raw_references(
    database_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "ingest.json"
    printed = _run(
        "bench/ingest.py", database_url, out,
        "--batch-events", "2000", "--single-requests", "50", "--rounds", "1", "--raw-commits", "50",
    )  # fmt: skip
    figures = json.loads(out.read_text())
    assert figures["rounds"] == 1 and figures["batch_events"] == 2000
    for figure in (
        "raw_copy_rows_per_second",
        "raw_single_row_commits_per_second",
        "batch_events_per_second",
        "single_requests_per_second",
        "batch_ratio_to_raw_copy",
        "batch_end_to_end_events_per_second",
        "batch_cpu_us_per_event_api",
    ):
        assert figures[figure] > 0, figure
    assert "x raw COPY" in printed and "CPU per event" in printed
    batch, single = reported_rows("ingest", out)
    assert f"{figures['batch_events_per_second']:,.0f} events/s" in batch
    assert f"{figures['single_requests_per_second']:,.0f} requests/s" in single


def test_the_command_benchmark_measures_http_commands_and_the_raw_references(
    database_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "commands.json"
    printed = _run(
        "bench/commands.py", database_url, out,
        "--commands", "60", "--clients", "4", "--rounds", "1", "--use-case-commands", "10",
    )  # fmt: skip
    figures = json.loads(out.read_text())
    assert figures["rounds"] == 1 and figures["clients"] == 4
    for figure in (
        "raw_single_row_commits_per_second",
        "raw_concurrent_commits_per_second",
        "http_commands_per_second",
        "use_case_commands_per_second_one_client",
        "cpu_us_per_command_api",
    ):
        assert figures[figure] > 0, figure
    assert "POST /v1/customers" in printed
    (row,) = reported_rows("commands", out)
    assert f"{figures['http_commands_per_second']:,.0f} requests/s" in row
