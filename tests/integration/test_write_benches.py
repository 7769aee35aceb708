"""bench/simulate.py and bench/billing.py keep working: on a tiny input each measures every figure
it promises, beside its raw PostgreSQL reference."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.bench_report import reported_rows

REPO = Path(__file__).resolve().parents[2]


def run_bench(*command: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, *command], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_the_simulate_benchmark_measures_events_per_second_beside_raw_copy(
    database_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "simulate.json"
    done = run_bench(
        "bench/simulate.py", "--customers", "12", "--months", "3", "--workers", "0",
        "--database-url", database_url, "--json", str(out),
    )  # fmt: skip
    figures = json.loads(out.read_text())
    assert figures["customers"] == 12 and figures["workers"] == 0
    assert figures["events"] > 100 and figures["raw_copy_rows"] == figures["events"]
    for figure in ("events_per_second", "raw_copy_rows_per_second", "ratio_to_raw"):
        assert figures[figure] > 0, figure
    assert "events/s" in done.stdout and "ratio to raw" in done.stdout
    (row,) = reported_rows("simulate", out)
    assert f"{figures['events_per_second']:,.0f} events/s" in row and f"{figures['events']:,} events" in row


def test_the_billing_benchmark_measures_invoices_per_second_beside_raw_inserts(
    database_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "billing.json"
    run_bench(
        "bench/billing.py", "--subscriptions", "30", "--usage", "2",
        "--database-url", database_url, "--json", str(out),
    )  # fmt: skip
    figures = json.loads(out.read_text())
    assert figures["invoices_finalized"] == 30
    for figure in ("invoices_per_second", "raw_rows_per_second", "ratio_to_raw"):
        assert figures[figure] > 0, figure
    (row,) = reported_rows("billing", out)
    assert f"{figures['invoices_per_second']:,.0f} invoices/s" in row
