"""Ingest throughput through HTTP, durable, beside raw PostgreSQL on the same server in the same run.

    .venv/bin/python bench/ingest.py [--batch-events 100000] [--single-requests 20000] [--database-url URL]

It creates a fresh schema, starts the API with uvicorn (`--workers 3` processes by default: the
API is stateless and the appends of all workers serialise on the event store's lock) in a
subprocess on a free port, projector off (the bench measures the write path), registers the
customers, and drives it from this process with a minimal HTTP/1.1 client on asyncio (cheap,
so the machine's two cores go to the server and PostgreSQL rather than to the load generator).
Every commit is durable (`synchronous_commit` is checked to be on). Figures printed:

- raw PostgreSQL COPY rows/s: rows like the ledger's usage records (~330 B of JSON) in one binary
  COPY into a copy of the events table (same columns, defaults and indexes);
- raw PostgreSQL single-row commits/s: INSERT + COMMIT per row on one connection;
- batch ingest events/s: batches of 1,000 CloudEvents (`application/cloudevents-batch+json`)
  from a few concurrent clients (a new connection per batch, so the workers share them);
- single-event ingest requests/s: one structured CloudEvent per request from many concurrent
  clients (the group commit shares transactions between them).
Each run checks that every event was answered `accepted` and is in the store exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
import psycopg
from fastapi import FastAPI

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from infra.bootstrap import bootstrap
from infra.eventstore import COPY_TYPES
from infra.settings import DatabaseAddress, Settings

ROOT = Path(__file__).resolve().parents[1]
CUSTOMERS = 100
COLUMNS = (
    "originator_id, originator_version, topic, state, event_type, occurred_at, customer_id, source,"
    " actor, correlation_id, causation_id, reason, schema_version"
)
FORMAT = JSONFormat()


# ---------------------------------------------------------------------------- the server


def make_app() -> FastAPI:
    """The app factory each uvicorn worker calls: the API as `ledger api` builds it, without
    the projector (the bench measures the write path)."""
    from api.app import create_app

    url, schema = os.environ["BENCH_DATABASE_URL"], os.environ["BENCH_SCHEMA"]
    settings = Settings(database_url=url, database_schema=schema, _env_file=None)  # type: ignore[call-arg]
    return create_app(lambda: bootstrap(settings, url, run_projection=False))


def serve(database_url: str, schema: str, port: int, workers: int) -> None:
    """Run in the subprocess: uvicorn with `workers` processes (the API is stateless; appends
    from all of them serialise on the event store's append lock)."""
    import uvicorn

    os.environ.update(BENCH_DATABASE_URL=database_url, BENCH_SCHEMA=schema)
    uvicorn.run(
        "bench.ingest:make_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(database_url: str, schema: str, workers: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            "--database-url",
            database_url,
            "--schema",
            schema,
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process, port
        except OSError:
            if process.poll() is not None:
                raise SystemExit("the API did not start") from None
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the API did not start within 60 s")


# ---------------------------------------------------------------------------- the client


def request_bytes(path: str, body: bytes, content_type: str, token: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return status, await reader.readexactly(length)


async def drive(
    port: int, requests: list[bytes], clients: int, *, reconnect: bool = False
) -> tuple[float, list[tuple[int, bytes]]]:
    """Send every request once from `clients` concurrent clients over keep-alive connections,
    or a new connection per request (`reconnect`: so that the workers, which accept from one
    listening socket, share the load evenly); (seconds, answers)."""
    answers: list[tuple[int, bytes]] = [(0, b"")] * len(requests)
    next_index = iter(range(len(requests)))

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in next_index:
            if reconnect and writer.is_closing() is False and i >= clients:
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            answers[i] = await _exchange(reader, writer, requests[i])
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - start, answers


def usage_event(n: int, prefix: str) -> CloudEvent:
    return CloudEvent(
        {
            "id": f"{prefix}-{n}",
            "source": "bench",
            "type": "usage.recorded",
            "subject": f"customer-{n % CUSTOMERS}",
            "time": datetime(2025, 3, 1, tzinfo=UTC),
        },
        {"metric": "api_calls", "value": n % 97, "properties": {"region": "eu", "endpoint": "/v1/search"}},
    )


def accepted(answers: list[tuple[int, bytes]], expected_status: int) -> int:
    total = 0
    for status, body in answers:
        if status != expected_status:
            raise SystemExit(f"unexpected answer {status}: {body[:300]!r}")
        total += sum(1 for r in orjson.loads(body)["results"] if r["status"] == "accepted")
    return total


# ---------------------------------------------------------------------------- raw PostgreSQL


def raw_rates(url: str, schema: str, rows: int, commits: int) -> tuple[float, float]:
    """COPY rows/s and single-row commits/s into a copy of the events table (same columns,
    defaults and indexes), rows like the ledger's usage records."""
    payload = orjson.dumps(
        {
            "timestamp": datetime.now(UTC),
            "originator_topic": "domain.usage:UsageRecord",
            "customer_id": uuid.uuid4(),
            "metric": "api_calls",
            "value": "42",
            "idempotency_key": "bench-1",
            "properties": {"region": "eu", "endpoint": "/v1/search"},
            "occurred_at": datetime.now(UTC),
            "source": "bench",
            "content_hash": "0" * 32,
        }
    )
    now = datetime.now(UTC)
    customers = [uuid.uuid4() for _ in range(CUSTOMERS)]
    topic, kind = "domain.usage:UsageRecord.Recorded", "UsageRecord.Recorded"
    with psycopg.connect(DatabaseAddress(url).conninfo()) as conn:
        conn.execute(
            f"CREATE TABLE {schema}.raw_events"
            f" (LIKE {schema}.ledger_events INCLUDING DEFAULTS INCLUDING INDEXES)"
        )
        conn.commit()
        table = f"{schema}.raw_events"
        start = time.perf_counter()
        with conn.cursor() as cur, cur.copy(f"COPY {table} ({COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(COPY_TYPES)
            for n in range(rows):
                row = (uuid.uuid4(), 1, topic, payload, kind, now, customers[n % CUSTOMERS])
                copy.write_row((*row, "ingest", "bench", None, None, None, 1))
        conn.commit()
        copy_rate = rows / (time.perf_counter() - start)
        start = time.perf_counter()
        for n in range(commits):
            conn.execute(
                f"INSERT INTO {table} ({COLUMNS}) VALUES (%s, 1, %s, %s, %s, %s, %s, 'ingest', 'bench',"
                " NULL, NULL, NULL, 1)",
                (uuid.uuid4(), topic, payload, kind, now, customers[n % CUSTOMERS]),
            )
            conn.commit()
        commit_rate = commits / (time.perf_counter() - start)
    return copy_rate, commit_rate


# ---------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-events", type=int, default=100_000)
    parser.add_argument("--batch-clients", type=int, default=6)
    parser.add_argument("--single-requests", type=int, default=20_000)
    parser.add_argument("--single-clients", type=int, default=64)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("LEDGER_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/ledger_bench"),
    )
    parser.add_argument("--workers", type=int, default=3, help="uvicorn worker processes")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--schema", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.database_url, args.schema, args.port, args.workers)
        return

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    settings = Settings(database_url=args.database_url, database_schema=schema, _env_file=None)  # type: ignore[call-arg]
    container = bootstrap(settings, args.database_url, run_projection=False)
    process: subprocess.Popen[bytes] | None = None
    try:
        with container.pool.connection() as conn:
            durable = conn.execute("SHOW synchronous_commit").fetchone()
        if durable is None or next(iter(durable.values())) != "on":
            raise SystemExit("synchronous_commit must be on for a durable benchmark")
        from application import commands as c

        ctx = c.CommandContext(occurred_at=datetime(2025, 1, 1, tzinfo=UTC), actor="bench")
        for n in range(CUSTOMERS):
            container.ledger.register_customer(
                c.RegisterCustomer(external_id=f"customer-{n}", email=f"c{n}@example.com", currency="EUR"),
                ctx,
            )
        _, token = container.keys.mint(role="ingest", name="bench")

        copy_rate, commit_rate = raw_rates(args.database_url, schema, args.batch_events, 2000)

        batches = []
        for start in range(0, args.batch_events, 1000):
            events = [usage_event(n, "b") for n in range(start, min(start + 1000, args.batch_events))]
            body = b"[" + b",".join(FORMAT.write(e) for e in events) + b"]"
            batches.append(request_bytes("/v1/events", body, "application/cloudevents-batch+json", token))
        singles = [
            request_bytes(
                "/v1/events", FORMAT.write(usage_event(n, "s")), "application/cloudevents+json", token
            )
            for n in range(args.single_requests)
        ]
        warmup = [
            request_bytes(
                "/v1/events", FORMAT.write(usage_event(n, "w")), "application/cloudevents+json", token
            )
            for n in range(500)
        ]

        process, port = start_server(args.database_url, schema, args.workers)
        asyncio.run(drive(port, warmup, 16))
        seconds, answers = asyncio.run(drive(port, batches, args.batch_clients, reconnect=True))
        batch_rate = accepted(answers, 202) / seconds
        seconds, answers = asyncio.run(drive(port, singles, args.single_clients))
        single_rate = accepted(answers, 202) / seconds

        with container.pool.connection() as conn:
            row = conn.execute(
                "SELECT count(*) AS n, count(DISTINCT originator_id) AS streams FROM ledger_events"
                " WHERE event_type = 'UsageRecord.Recorded'"
            ).fetchone()
        expected = args.batch_events + args.single_requests + len(warmup)
        if row is None or row["n"] != expected or row["streams"] != expected:
            raise SystemExit(f"the store holds {row} usage records, expected {expected} once each")
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
        container.close()
        with psycopg.connect(DatabaseAddress(args.database_url).conninfo(), autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")

    print(
        f"ingest, durable (synchronous_commit on), {os.cpu_count()} cores,"
        f" API in {args.workers} uvicorn worker process(es)"
    )
    print(f"raw PostgreSQL COPY rows/s                : {copy_rate:10.0f}")
    print(f"raw PostgreSQL single-row commits/s       : {commit_rate:10.0f}")
    print(
        f"batch ingest events/s (1,000 per batch, {args.batch_clients} clients): {batch_rate:10.0f}"
        f"   ({batch_rate / copy_rate:.2f} x raw COPY)"
    )
    print(
        f"single-event ingest requests/s ({args.single_clients} clients) : {single_rate:10.0f}"
        f"   ({single_rate / commit_rate:.2f} x raw single-row commits)"
    )


if __name__ == "__main__":
    main()
