"""A plain `ledger up` for the benchmarks: started as a user starts it (the same command, its
default processes and settings), against a fresh database on the PostgreSQL server given, with
the embedded Kafka-protocol broker on a free port; stopped with Ctrl-C (SIGINT) and its database
dropped afterwards.

Only what a user would set anyway is set: where the database is (`LEDGER_DATABASE_URL`, so the
raw PostgreSQL reference is measured on the same server), the ports, the data directory and an
admin token (`LEDGER_ADMIN_TOKEN`, instead of reading the printed key)."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import httpx
import psutil  # type: ignore[import-untyped]
import psycopg

ROOT = Path(__file__).resolve().parents[1]
STARTUP_SECONDS = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_database(server_url: str, database: str) -> str:
    """The same server, another database."""
    return urlunparse(urlparse(server_url)._replace(path=f"/{database}"))


@dataclass
class RunningLedger:
    base_url: str
    port: int
    admin_token: str
    database_url: str  # the database `ledger up` writes (schema `ledger`)
    pid: int
    log: Path

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=60
        )

    def mint_key(self, role: str) -> str:
        with self.client() as client:
            answer = client.post("/v1/api-keys", json={"role": role, "name": f"bench {role}"})
            answer.raise_for_status()
            key: str = answer.json()["key"]
            return key

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time used so far by its API processes, by its own process (the followers of the
        log: relay, projectors, policies...), and by the PostgreSQL backends serving its database
        (when the server runs on this machine and may be looked at): on a shared machine, what
        each part costs per event says more than the rate."""
        ledger = psutil.Process(self.pid)
        children = ledger.children(recursive=True)
        api = [p for p in children if "python" in p.name().lower()]
        with self.connect() as conn:
            backends = [
                int(row[0])  # type: ignore[call-overload]
                for row in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid()"
                )
            ]
        return {
            "api": _cpu(api),
            "followers": _cpu([ledger]),
            "postgres": _cpu(psutil.Process(pid) for pid in backends if psutil.pid_exists(pid)),
        }

    def followers_caught_up(self, timeout: float = 600) -> float:
        """Seconds until the core projector has applied the whole log (relay and projector
        catching up after a burst)."""
        start = time.perf_counter()
        with self.client() as client:
            while time.perf_counter() - start < timeout:
                status = client.get("/v1/ops/projections").json()
                core = [p for p in status["projectors"] if p["name"] == "core"]
                if core and core[0]["lag_events"] == 0:
                    return time.perf_counter() - start
                time.sleep(0.05)
        raise SystemExit(f"the core projector did not catch up within {timeout:.0f} s")

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        """A connection to its database, with the ledger's schema first on the search path."""
        conn = psycopg.connect(self.database_url, autocommit=True)
        conn.execute("SET search_path TO ledger, public")
        return conn


@contextlib.contextmanager
def ledger_up(server_url: str, *, label: str = "bench") -> Iterator[RunningLedger]:
    """`ledger up` on a fresh database of `server_url`'s server; yields once it answers."""
    database = f"ledger_{label}_{uuid.uuid4().hex[:8]}"
    database_url = with_database(server_url, database)
    port, token = free_port(), "lk_bench_" + secrets.token_urlsafe(24)
    data_dir = Path(tempfile.mkdtemp(prefix=f"ledger-{label}-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    env.update(
        PYTHONUNBUFFERED="1",
        LEDGER_DATABASE_URL=database_url,
        LEDGER_KAFKA_PORT=str(free_port()),
        LEDGER_ADMIN_TOKEN=token,
    )
    log = data_dir / "ledger-up.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "infra.cli", "up", "--data-dir", str(data_dir), "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(process, base, log)
        yield RunningLedger(base, port, token, database_url, process.pid, log)
    finally:
        stop(process)
        with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _cpu(processes: Iterable[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def wait_until_serving(process: subprocess.Popen[bytes], base: str, log: Path) -> None:
    """Until the process started by a bench answers /healthz (its output, in `log`, if it does
    not)."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the ledger exited during start-up:\n" + log.read_text(errors="replace"))
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise SystemExit("the ledger did not start in time:\n" + log.read_text(errors="replace"))


def stop(process: subprocess.Popen[bytes]) -> None:
    """Ctrl-C, as a user stops it; killed if it has not stopped within a minute."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
