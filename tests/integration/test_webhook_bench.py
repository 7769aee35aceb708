"""bench/webhooks.py keeps working: on a tiny input it measures every figure it promises, and
checks on the way that every message arrived exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_webhook_benchmark_measures_deliveries_latency_and_the_raw_loop(
    database_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "webhooks.json"
    done = subprocess.run(
        [sys.executable, "bench/webhooks.py", "--events", "20", "--latency-events", "5",
         "--latency-rate", "50", "--database-url", database_url, "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(out.read_text())
    assert figures["events"] == 20 and figures["latency_events"] == 5
    for figure in ("raw_posts_per_second", "deliveries_per_second", "commit_to_delivery_ms_p50"):
        assert figures[figure] > 0, figure
    assert figures["commit_to_delivery_ms_p99"] >= figures["commit_to_delivery_ms_p50"]
    assert "deliveries/s" in done.stdout
