"""bench/dashboard.py keeps working: on a tiny history it measures every figure it promises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.browser


def test_the_dashboard_benchmark_measures_paint_chart_bytes_and_api_calls_of_each_screen(
    browser: Any, database_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "dashboard.json"
    done = subprocess.run(
        [sys.executable, "bench/dashboard.py", "--customers", "4", "--months", "2", "--runs", "1",
         "--database-url", database_url, "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr

    figures = json.loads(out.read_text())
    assert figures["api_workers"] == 2  # served as `ledger up` serves it
    overview = figures["overview"]
    assert overview["first_contentful_paint_ms_p50"] > 0
    assert overview["chart_drawn_ms_p50"] >= overview["first_contentful_paint_ms_p50"]
    assert overview["bytes_transferred"] > 50_000  # the page, its modules and uPlot at least
    assert set(figures["screens"]) == {
        "overview", "customers", "subscriptions", "payments", "invoices", "quotas", "alerts",
    }  # fmt: skip
    for screen in figures["screens"].values():
        assert screen["slowest_call"].startswith("/v1/")
        assert screen["p95_ms"] > 0
        assert screen["p95_ms_alone"] > 0
    assert "overview chart drawn" in done.stdout
