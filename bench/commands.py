"""Command throughput: how many commands per second the ledger records durably, beside what raw
PostgreSQL does on the same server in the same run.

    .venv/bin/python bench/commands.py [--commands 4000] [--clients 16] [--rounds 3]
                                       [--database-url URL] [--json FILE]

Figures printed (medians of the rounds):
- raw PostgreSQL single-row commits/s: INSERT + COMMIT per row (synchronous_commit on), on one
  connection, and from `--clients` connections at once (PostgreSQL then flushes the WAL of
  concurrent commits together);
- ledger HTTP commands/s: `POST /v1/customers` (auth, validation, the use case: load by natural
  key, decide, append with the envelope, answer with the receipt and position) to a plain
  `ledger up` (bench/ledger_up.py) from `--clients` concurrent clients over keep-alive connections;
- ledger use case commands/s: `register_customer` in this process, one client, one command per
  transaction (what a single writer gets);
- the CPU each part of `ledger up` used per command over HTTP: its API processes, its own process
  (the followers of the log), the PostgreSQL backends of its database.
Every customer must be answered 201 and be registered exactly once.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from application import commands as c
from bench.http_load import drive, request_bytes
from bench.ledger_up import RunningLedger, ledger_up
from infra.bootstrap import bootstrap
from infra.settings import Settings

PAYLOAD = b'{"external_id":"x","email":"x@example.com","currency":"EUR"}'


def raw_commits(url: str, table: str, n: int, connections: int) -> float:
    """Single-row INSERT + COMMIT, `n` in all, from `connections` connections at once."""
    share = max(n // connections, 1)
    start_line = threading.Barrier(connections + 1)

    def writer() -> None:
        with psycopg.connect(url) as conn:
            start_line.wait()
            for _ in range(share):
                conn.execute(f"INSERT INTO {table} VALUES (%s, %s)", (uuid.uuid4(), PAYLOAD))
                conn.commit()

    threads = [threading.Thread(target=writer) for _ in range(connections)]
    for thread in threads:
        thread.start()
    start_line.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return share * connections / (time.perf_counter() - start)


def raw_rates(ledger: RunningLedger, n: int, clients: int) -> tuple[float, float]:
    table = f"public.raw_commands_{uuid.uuid4().hex[:8]}"
    with ledger.connect() as conn:
        conn.execute(f"CREATE TABLE {table} (id uuid PRIMARY KEY, body bytea)")
    try:
        one = raw_commits(ledger.database_url, table, min(n, 2000), 1)
        many = raw_commits(ledger.database_url, table, n, clients)
    finally:
        with ledger.connect() as conn:
            conn.execute(f"DROP TABLE {table}")
    return one, many


def registrations(prefix: str, n: int, token: str) -> list[bytes]:
    return [
        request_bytes(
            "/v1/customers",
            orjson.dumps(
                {"external_id": f"{prefix}-{i}", "email": f"{prefix}{i}@example.com", "currency": "EUR"}
            ),
            "application/json",
            token,
        )
        for i in range(n)
    ]


def check_created(answers: list[tuple[int, bytes]]) -> None:
    for status, body in answers:
        if status != 201:
            raise SystemExit(f"unexpected answer {status}: {body[:300]!r}")


def use_case_rate(database_url: str, n: int) -> float:
    """register_customer in this process, one command per transaction, one client."""
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    settings = Settings(database_url=database_url, database_schema=schema, _env_file=None)  # type: ignore[call-arg]
    container = bootstrap(settings, database_url, run_projection=False)
    try:
        ctx = c.CommandContext(occurred_at=datetime.now(UTC), actor="bench")
        start = time.perf_counter()
        for i in range(n):
            container.ledger.register_customer(
                c.RegisterCustomer(external_id=f"uc-{i}", email=f"u{i}@example.com", currency="EUR"), ctx
            )
        return n / (time.perf_counter() - start)
    finally:
        container.close()
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def registered(ledger: RunningLedger) -> tuple[int, int]:
    with ledger.connect() as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT originator_id) FROM ledger_events"
            " WHERE event_type = 'Customer.Registered'"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])  # type: ignore[call-overload]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--commands", type=int, default=4000, help="commands per round")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="measurements; the medians are reported")
    parser.add_argument(
        "--use-case-commands", type=int, default=1000, help="commands of the in-process single-client figure"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("LEDGER_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL server: `ledger up` gets a fresh database of its own there",
    )
    parser.add_argument("--json", type=Path, help="write the figures as JSON to this file")
    args = parser.parse_args()

    rounds: list[dict[str, float]] = []
    with ledger_up(args.database_url, label="bench_commands") as ledger:
        with ledger.connect() as conn:
            durable = conn.execute("SHOW synchronous_commit").fetchone()
        if durable is None or durable[0] != "on":
            raise SystemExit("synchronous_commit must be on for a durable benchmark")
        token = ledger.admin_token
        _, answers = drive(ledger.port, registrations("warmup", 200, token), args.clients)
        check_created(answers)
        expected = 200
        for r in range(args.rounds):
            one, many = raw_rates(ledger, args.commands, args.clients)
            requests = registrations(f"r{r}", args.commands, token)
            cpu_before = ledger.cpu_seconds()
            seconds, answers = drive(ledger.port, requests, args.clients)
            cpu_after = ledger.cpu_seconds()
            check_created(answers)
            http = args.commands / seconds
            expected += args.commands
            rounds.append(
                {
                    "raw_single_row_commits_per_second": one,
                    "raw_concurrent_commits_per_second": many,
                    "http_commands_per_second": http,
                    **{
                        f"cpu_us_per_command_{part}": 1e6
                        * (cpu_after[part] - cpu_before[part])
                        / args.commands
                        for part in cpu_before
                    },
                    "load_average_1min": os.getloadavg()[0],
                }
            )
            print(
                f"round {r + 1}: HTTP {http:,.0f} commands/s ({args.clients} clients); raw commits"
                f" {one:,.0f}/s on one connection, {many:,.0f}/s from {args.clients};"
                f" load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
        # Exactly once: the same registrations again record nothing and answer as the first time.
        _, answers = drive(ledger.port, registrations("r0", min(args.commands, 500), token), args.clients)
        check_created(answers)
        found, streams = registered(ledger)
        if found != expected or streams != expected:
            raise SystemExit(f"{found} registrations ({streams} customers) stored, expected {expected}")
    use_case = use_case_rate(ledger_database(args.database_url), args.use_case_commands)

    def median(name: str) -> float:
        return statistics.median(r[name] for r in rounds)

    figures: dict[str, Any] = {
        "date": datetime.now(UTC).date().isoformat(),
        "cores": os.cpu_count(),
        "server": "plain `ledger up` (default processes and settings), durable commits",
        "rounds": len(rounds),
        "commands": args.commands,
        "clients": args.clients,
        **{name: round(median(name), 1) for name in rounds[0]},
        "use_case_commands_per_second_one_client": round(use_case, 1),
        "http_ratio_to_raw_single_row_commits": round(
            median("http_commands_per_second") / median("raw_single_row_commits_per_second"), 3
        ),
        "http_ratio_to_raw_concurrent_commits": round(
            median("http_commands_per_second") / median("raw_concurrent_commits_per_second"), 3
        ),
        "each_round": [{k: round(v, 1) for k, v in r.items()} for r in rounds],
    }
    print(f"commands, durable commits, {os.cpu_count()} cores; medians of {len(rounds)} round(s)")
    one = figures["raw_single_row_commits_per_second"]
    print(f"raw PostgreSQL single-row commits/s, one connection : {one:10,.0f}")
    print(
        f"raw PostgreSQL single-row commits/s, {args.clients} connections : "
        f"{figures['raw_concurrent_commits_per_second']:10,.0f}"
    )
    print(
        f"ledger HTTP POST /v1/customers/s, {args.clients} clients   : "
        f"{figures['http_commands_per_second']:10,.0f}"
        f"   ({figures['http_ratio_to_raw_single_row_commits']:.2f} x raw on one connection,"
        f" {figures['http_ratio_to_raw_concurrent_commits']:.2f} x raw from {args.clients})"
    )
    print(f"ledger use case commands/s, one client in process   : {use_case:10,.0f}")
    print(
        "CPU per command (us): "
        + ", ".join(
            f"{part} {figures[f'cpu_us_per_command_{part}']:.0f}" for part in ("api", "followers", "postgres")
        )
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


def ledger_database(server_url: str) -> str:
    """Where the in-process use case writes: the server's `postgres` database, a schema of its own."""
    from bench.ledger_up import with_database

    return with_database(server_url, "postgres")


if __name__ == "__main__":
    main()
