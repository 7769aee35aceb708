"""What the bench smoke tests check of bench/report.py: the JSON a benchmark just wrote makes its
rows of the README's performance table, so that neither drifts from the other."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def reported_rows(script: str, json_file: Path) -> list[str]:
    """The table rows bench/report.py makes of `json_file` (the JSON of bench/<script>.py)."""
    done = subprocess.run(
        [sys.executable, "bench/report.py", f"--{script.replace('_', '-')}", str(json_file)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    return rows[1:]  # without the header
