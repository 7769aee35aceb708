"""`ledger up` as a newcomer runs it: no configuration, embedded PostgreSQL, a printed admin key;
what was created is still there after Ctrl-C and a restart."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
KEY_LINE = re.compile(r"Admin key \(shown once, keep it safe\): (lk_admin_\S+)")
STARTUP_SECONDS = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def ledger_up(data_dir: Path, port: int) -> Iterator[tuple[str, list[str]]]:
    """Start `ledger up` with no database configured; yield its URL and its output lines so far."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    env["PYTHONUNBUFFERED"] = "1"
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "up", "--data-dir", str(data_dir), "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                pytest.fail("ledger up exited during start-up:\n" + "".join(lines))
            lines.append(line)
            if "Application startup complete" in line:
                break
        else:
            pytest.fail("ledger up did not start in time:\n" + "".join(lines))
        assert any(f"Ledger API on {base}" in line for line in lines), "".join(lines)
        yield base, lines
    finally:
        process.send_signal(signal.SIGINT)
        try:
            remaining, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            remaining, _ = process.communicate()
        lines.append(remaining or "")
    assert process.returncode == 0, "ledger up did not stop cleanly on Ctrl-C:\n" + "".join(lines)


def _post(client: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(path, json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def test_ledger_up_serves_commands_and_keeps_them_across_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / ".ledger"
    port = _free_port()

    with ledger_up(data_dir, port) as (base, lines):
        match = next((KEY_LINE.search(line) for line in lines if KEY_LINE.search(line)), None)
        assert match, "no admin key printed on first start:\n" + "".join(lines)
        key = match.group(1)
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            _post(
                client,
                "/v1/plans",
                {"code": "pro", "name": "Pro", "currency": "EUR", "amount": 2000, "interval": "month"},
            )
            customer = _post(
                client,
                "/v1/customers",
                {"external_id": "acme", "email": "billing@acme.io", "currency": "EUR"},
            )
            sub = _post(client, "/v1/subscriptions", {"customer_id": customer["id"], "plan_code": "pro"})
            assert sub["status"] == "active"

    with ledger_up(data_dir, port) as (base, lines):
        assert not any(KEY_LINE.search(line) for line in lines), "a second admin key was minted on restart"
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            read = client.get(f"/v1/subscriptions/{sub['id']}", params={"min_position": sub["position"]})
            assert read.status_code == 200, read.text
            assert read.json()["plan_code"] == "pro"
            got = client.get(f"/v1/customers/{customer['id']}").json()
            assert (got["external_id"], got["mrr"]) == ("acme", 2000)
            assert client.get("/v1/plans/pro").json()["amount"] == 2000
