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


def up_environment(kafka_port: int) -> dict[str, str]:
    """No database or broker configured; the embedded broker on a port of its own (9092, the
    default, may be another test's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["LEDGER_KAFKA_PORT"] = str(kafka_port)
    return env


def up_command(data_dir: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "infra.cli", "up", "--data-dir", str(data_dir), "--port", str(port)]


@contextmanager
def ledger_up(data_dir: Path, port: int, kafka_port: int | None = None) -> Iterator[tuple[str, list[str]]]:
    """Start `ledger up` with no database configured; yield its URL and its output lines so far."""
    env = up_environment(kafka_port or _free_port())
    process = subprocess.Popen(
        up_command(data_dir, port),
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
        # Its embedded broker is new, as at every start: that is no loss of data (observation 11).
        assert not any("lost acknowledged" in line or "lost the topic" in line for line in lines), "".join(
            lines
        )
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            read = client.get(f"/v1/subscriptions/{sub['id']}", params={"min_position": sub["position"]})
            assert read.status_code == 200, read.text
            assert read.json()["plan_code"] == "pro"
            got = client.get(f"/v1/customers/{customer['id']}").json()
            assert (got["external_id"], got["mrr"]) == ("acme", 2000)
            assert client.get("/v1/plans/pro").json()["amount"] == 2000


def test_a_second_ledger_up_on_the_same_data_dir_and_port_fails_at_once_saying_why(tmp_path: Path) -> None:
    """Observation 11: a second `ledger up` printed its URL, started a relay, then failed to bind
    (and needed two Ctrl-C). Now it stops before starting anything, and says why."""
    data_dir = tmp_path / ".ledger"
    port, kafka_port = _free_port(), _free_port()
    with ledger_up(data_dir, port, kafka_port) as (base, lines):
        assert any(f"Kafka bootstrap servers: 127.0.0.1:{kafka_port}" in line for line in lines), "".join(
            lines
        )
        key = next(m.group(1) for line in lines if (m := KEY_LINE.search(line)))
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            kafka = client.get("/v1/ops/projections").json()["kafka"]
            assert kafka["bootstrap_servers"] == f"127.0.0.1:{kafka_port}"
            assert kafka["topic"] == "ledger.events"

        second = subprocess.run(
            up_command(data_dir, port),
            cwd=REPO,
            env=up_environment(kafka_port),
            capture_output=True,
            text=True,
            timeout=STARTUP_SECONDS,
        )
        said = second.stdout + second.stderr
        assert second.returncode == 1, said
        assert "another `ledger up` (pid " in said and str(data_dir.resolve()) in said, said
        assert "Ledger API on" not in said and "Kafka bootstrap servers" not in said, said
        assert "Traceback" not in said, said

        elsewhere = subprocess.run(  # its own data directory, the same API port
            up_command(tmp_path / "other", port),
            cwd=REPO,
            env=up_environment(_free_port()),
            capture_output=True,
            text=True,
            timeout=STARTUP_SECONDS,
        )
        said = elsewhere.stdout + elsewhere.stderr
        assert elsewhere.returncode == 1, said
        assert f"cannot listen on 127.0.0.1:{port}" in said and "Ledger API on" not in said, said


def test_ledger_up_on_a_taken_kafka_port_says_so_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        kafka_port = taken.getsockname()[1]
        result = subprocess.run(
            up_command(tmp_path / ".ledger", _free_port()),
            cwd=REPO,
            env=up_environment(kafka_port),
            capture_output=True,
            text=True,
            timeout=STARTUP_SECONDS,
        )
    said = result.stdout + result.stderr
    assert result.returncode == 1, said
    assert f"127.0.0.1:{kafka_port} is in use" in said and "LEDGER_KAFKA_PORT" in said, said
    assert "Ledger API on" not in said and "Traceback" not in said, said
