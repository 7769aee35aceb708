"""bench/known_at.py keeps working: on a tiny history it measures every figure it promises,
beside the live answer and the raw PostgreSQL reference of the same run, and its oracle check
(a full replay snapshot) agrees."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.bench_report import reported_rows

REPO = Path(__file__).resolve().parents[2]


def test_the_known_at_benchmark_measures_new_moments_beside_live_and_raw_queries(
    database_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "known_at.json"
    done = subprocess.run(
        [sys.executable, "bench/known_at.py", "--customers", "4", "--months", "2", "--moments", "3",
         "--check", "1", "--workers", "1", "--database-url", database_url, "--build", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(out.read_text())
    assert figures["events"] > 0
    for name, endpoint in figures["endpoints"].items():
        assert endpoint["known_at"]["n"] == 3, name
        for figure in ("known_at", "live_http", "raw_sql_live"):
            assert endpoint[figure]["p95"] >= endpoint[figure]["p50"] > 0, (name, figure)
        assert endpoint["ratio_known_at_to_raw_p95"] > 0
    assert figures["raw_count_recorded_by_moment"]["p50"] > 0
    assert [check["equal"] for check in figures["oracle_checks"]] == [True]
    assert figures["storage"]["rm_mrr_movements"]["live_rows"] >= 0
    assert "new moments per endpoint" in done.stdout
    (row,) = reported_rows("known_at", out)
    assert f"p95 {figures['known_at_all']['p95']:,.1f} ms" in row and f"{figures['events']:,}-event" in row
