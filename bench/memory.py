"""Resident memory of `ledger up` serving a large history, beside the history's own size.

    .venv/bin/python bench/memory.py --database-url postgresql://postgres@127.0.0.1:5432/ledger_bench50k
                                     [--schema ledger] [--seconds 900] [--json FILE]

Starts `ledger up` on the history (its default processes and threads, nothing tuned: API, relay,
projectors, policies, the clock, the sealer, the embedded Kafka-protocol broker) with a fresh data
directory, and samples the memory of its whole process tree twice a second, both as the sum of
resident set sizes (RSS: a page shared by several processes counts once per process) and as the
sum of proportional set sizes (PSS: each shared page divided between its processes, so the sum is
the physical memory the tree holds, the figure compared with the 1 GiB target):
- while it catches up: the relay publishes the log, the projectors build the read models from it
  (until the relay has published the head and the core projection has applied it, or `--seconds`
  have passed);
- then while it answers: reads of the read models and an analytics query over every event (DuckDB
  copies the log, within its memory limit).
Figures: the peak of the sums, the sum at the end, the peak of each phase. The reference, measured
in the same run: the history's size in PostgreSQL (the events table with its indexes) and its
events. PostgreSQL is not part of `ledger up` here (LEDGER_DATABASE_URL is set) and not counted.
The peak of each process is printed too: the embedded Kafka-protocol broker (Tansu, storage in
memory: the bundled binary has no other storage engine but S3) holds every event the relay
publishes, so with a fresh broker it grows with the whole log. Ctrl-C ends the catch-up early and
still reports.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
GIB = 1024**3
MIB = 1024**2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_memory(process: psutil.Process) -> dict[str, tuple[int, int]]:
    """(RSS, PSS) bytes of the process and each of its descendants, by name (those gone meanwhile
    count 0).

    RSS counts every page a process maps, so a sum over processes counts a page they share (the
    interpreter, libraries, copy-on-write memory) once per process. PSS divides each shared page
    between the processes that map it: its sum is the physical memory of the tree."""
    found: dict[str, tuple[int, int]] = {}
    for member in [process, *process.children(recursive=True)]:
        try:
            name = "ledger up" if member.pid == process.pid else member.name()
            info = member.memory_full_info()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        rss, pss = found.get(name, (0, 0))
        found[name] = (rss + info.rss, pss + info.pss)
    return found


class Sampler(threading.Thread):
    """The process tree's RSS and PSS twice a second, kept per phase."""

    def __init__(self, process: psutil.Process) -> None:
        super().__init__(daemon=True)
        self.process = process
        self.phase = "start"
        self.peaks: dict[str, int] = {}  # the peak of the sum, per phase
        self.by_process: dict[str, int] = {}  # the peak of each process
        self.pss_peaks: dict[str, int] = {}  # the same, proportional set sizes
        self.pss_by_process: dict[str, int] = {}
        self.last = 0
        self.last_pss = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.5):
            self.sample()

    def sample(self) -> None:
        try:
            members = tree_memory(self.process)
        except psutil.NoSuchProcess:
            return
        self.last = sum(rss for rss, _ in members.values())
        self.last_pss = sum(pss for _, pss in members.values())
        self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), self.last)
        self.pss_peaks[self.phase] = max(self.pss_peaks.get(self.phase, 0), self.last_pss)
        for name, (rss, pss) in members.items():
            self.by_process[name] = max(self.by_process.get(name, 0), rss)
            self.pss_by_process[name] = max(self.pss_by_process.get(name, 0), pss)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def history_size(conninfo: str, schema: str) -> tuple[int, int]:
    """(events, bytes of the events table with its indexes and TOAST)."""
    with psycopg.connect(conninfo) as conn:
        table = sql.Identifier(schema, "ledger_events")
        row: Any = conn.execute(
            sql.SQL("SELECT coalesce(max(notification_id), 0), pg_total_relation_size({}) FROM {}").format(
                sql.Literal(f"{schema}.ledger_events"), table
            )
        ).fetchone()
    return int(row[0]), int(row[1])


def applied(conninfo: str, schema: str) -> int:
    """The position the core projection has applied (0 before it wrote anything, or while the
    server has no connection to spare: it is shared)."""
    try:
        return _applied(conninfo, schema)
    except psycopg.OperationalError:
        return 0


def _applied(conninfo: str, schema: str) -> int:
    with psycopg.connect(conninfo) as conn:
        exists: Any = conn.execute("SELECT to_regclass(%s)", (f"{schema}.projection_partitions",)).fetchone()
        if exists[0] is None:
            return 0
        row: Any = conn.execute(
            sql.SQL("SELECT min(watermark) FROM {} WHERE name = 'core'").format(
                sql.Identifier(schema, "projection_partitions")
            )
        ).fetchone()
    return int(row[0] or 0)


def published(conninfo: str, schema: str) -> int:
    """The position the relay has published up to (0 before it published, or while the server has
    no connection to spare)."""
    try:
        with psycopg.connect(conninfo) as conn:
            row: Any = conn.execute(
                sql.SQL("SELECT coalesce(max(position), 0) FROM {}").format(
                    sql.Identifier(schema, "relay_state")
                )
            ).fetchone()
        return int(row[0])
    except psycopg.Error:
        return 0


def wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(1)
    return False


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/ledger_bench50k")
    parser.add_argument("--schema", default="ledger")
    parser.add_argument("--seconds", type=float, default=900, help="longest wait for the catch-up")
    parser.add_argument("--json", type=Path, help="write the figures as JSON to this file")
    parser.add_argument("--log", type=Path, help="keep the output of `ledger up` in this file")
    args = parser.parse_args()

    conninfo = psycopg.conninfo.make_conninfo(args.database_url)
    events, history_bytes = history_size(conninfo, args.schema)
    port, token = free_port(), secrets.token_urlsafe(24)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    env |= {
        "PYTHONUNBUFFERED": "1",
        "LEDGER_DATABASE_URL": args.database_url,
        "LEDGER_DATABASE_SCHEMA": args.schema,
        "LEDGER_KAFKA_PORT": str(free_port()),
        "LEDGER_ADMIN_TOKEN": token,
    }
    with tempfile.TemporaryDirectory(prefix="ledger-memory-") as data_dir:
        log = args.log or Path(data_dir) / "up.log"
        with log.open("w") as out:
            up = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "infra.cli",
                    "up",
                    "--data-dir",
                    f"{data_dir}/data",
                    "--port",
                    str(port),
                ],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        sampler = Sampler(psutil.Process(up.pid))
        sampler.start()
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {token}"}
        try:
            if not wait_until(lambda: _answers(base), 600):  # a loaded machine: the workers wait for locks
                raise SystemExit("ledger up did not start:\n" + log.read_text()[-3000:])
            sampler.phase = "catch-up"
            began = time.monotonic()
            try:
                caught_up = wait_until(
                    lambda: (
                        published(conninfo, args.schema) >= events
                        and applied(conninfo, args.schema) >= events
                    ),
                    args.seconds,
                )
            except KeyboardInterrupt:  # Ctrl-C ends the catch-up early: the figures so far count
                caught_up = False
            catch_up_seconds = time.monotonic() - began
            sampler.phase = "serving"
            with httpx.Client(base_url=base, headers=headers, timeout=600) as client:
                client.get("/v1/customers", params={"limit": 100}).raise_for_status()
                answer = client.post(
                    "/v1/analytics/query",
                    json={"sql": "SELECT type, count(*) AS n FROM events GROUP BY type ORDER BY n DESC"},
                )
                analytics_ok = answer.status_code == 200
            time.sleep(2)
        finally:
            sampler.stop()
            sampler.sample()  # the last, before `ledger up` is stopped
            up.send_signal(signal.SIGINT)
            try:
                up.wait(timeout=60)
            except subprocess.TimeoutExpired:
                up.kill()
    peak = max(sampler.peaks.values())
    peak_pss = max(sampler.pss_peaks.values())
    figures = {
        "date": datetime.now(UTC).date().isoformat(),
        "cores": os.cpu_count(),
        "history_events": events,
        "history_bytes_in_postgresql": history_bytes,
        "caught_up": caught_up,
        "catch_up_seconds": round(catch_up_seconds, 1),
        "applied_position": applied(conninfo, args.schema),
        "analytics_answered": analytics_ok,
        "peak_rss_bytes": peak,
        "end_rss_bytes": sampler.last,
        "peak_rss_bytes_by_phase": sampler.peaks,
        "peak_rss_bytes_by_process": sampler.by_process,
        "peak_rss_to_history_size": round(peak / history_bytes, 3),
        "peak_pss_bytes": peak_pss,
        "end_pss_bytes": sampler.last_pss,
        "peak_pss_bytes_by_phase": sampler.pss_peaks,
        "peak_pss_bytes_by_process": sampler.pss_by_process,
        "under_1_gib": peak_pss < GIB,
    }
    print(
        f"ledger up on a {events:,}-event history ({history_bytes / GIB:.2f} GiB in PostgreSQL):"
        f" peak RSS {peak / MIB:,.0f} MiB in all (catch-up {sampler.peaks.get('catch-up', 0) / MIB:,.0f},"
        f" serving {sampler.peaks.get('serving', 0) / MIB:,.0f}), {sampler.last / MIB:,.0f} MiB at the end;"
        f" {'caught up' if caught_up else 'not caught up'} in {catch_up_seconds:.0f} s;"
        f" by process: {', '.join(f'{n} {b / MIB:,.0f} MiB' for n, b in sampler.by_process.items())};"
        f" peak PSS (shared pages counted once) {peak_pss / MIB:,.0f} MiB in all, by process:"
        f" {', '.join(f'{n} {b / MIB:,.0f} MiB' for n, b in sampler.pss_by_process.items())};"
        f" analytics {'answered' if analytics_ok else 'failed'}\n"
        f"ratio to the history's size: {figures['peak_rss_to_history_size']}"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
