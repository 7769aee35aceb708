"""bench/projection.py keeps working: on a tiny history it measures every figure it promises,
beside the raw PostgreSQL reference of the same run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.bench_report import reported_rows

REPO = Path(__file__).resolve().parents[2]


def test_the_projection_benchmark_measures_projector_replay_and_lag_beside_raw_inserts(
    database_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "projection.json"
    done = subprocess.run(
        [sys.executable, "bench/projection.py", "--customers", "3", "--months", "2", "--lag-seconds", "1",
         "--lag-rates", "100,1000", "--replay-runs", "1", "--replay-workers", "2",
         "--database-url", database_url, "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(out.read_text())
    assert figures["history_events"] > 0
    for figure in ("raw_pipelined_inserts_per_s", "projector_events_per_s", "replay_events_per_s_median"):
        assert figures[figure] > 0, figure
    assert figures["projector_ratio_to_raw"] > 0 and figures["replay_ratio_to_raw"] > 0
    for rate in ("100", "1000"):
        lag = figures["lag"][rate]
        assert lag["events"] > 0 and lag["p99_ms"] >= lag["p50_ms"] > 0
    assert "projector, Kafka -> read models events/s" in done.stdout
    rows = reported_rows("projection", out)
    assert len(rows) == 4  # projector, replay, and the lag at each rate
    assert f"{figures['projector_events_per_s']:,.0f} events/s" in rows[0]
    assert f"p99 {figures['lag']['1000']['p99_ms']:,.0f} ms" in rows[3]
