"""Ingest throughput of a plain `ledger up`, durable, beside raw PostgreSQL on the same server in
the same run.

    .venv/bin/python bench/ingest.py [--batch-events 100000] [--single-requests 20000] [--rounds 3]
                                     [--database-url URL] [--json FILE]

It starts `ledger up` as a user does (bench/ledger_up.py: its default processes and settings,
relay, projectors, policies and all; a fresh database on the server of `--database-url`, the
embedded broker on a free port), registers the customers through the API, mints an ingest key,
and drives it from this process with a minimal HTTP/1.1 client on asyncio (cheap, so that the
machine's cores go to the ledger and PostgreSQL). Every commit is durable (`synchronous_commit`
is checked to be on). Each round measures, on the same server:

- raw PostgreSQL COPY rows/s: rows like the ledger's usage records (~330 B of JSON) in one binary
  COPY into a copy of the events table (same columns, defaults and indexes), committed;
- raw PostgreSQL single-row commits/s: INSERT + COMMIT per row on one connection;
- batch ingest events/s: batches of 1,000 CloudEvents (`application/cloudevents-batch+json`)
  from several concurrent clients (a new connection per batch, so that server processes sharing
  the listening socket share the load);
- single-event ingest requests/s: one structured CloudEvent per request from many concurrent
  clients over keep-alive connections.
Beside them: how long the followers (relay and projector) took to catch up after the batches, the
end-to-end rate that makes, and the CPU each part used per event during the batches (API
processes, `ledger up`'s own process with the followers, the PostgreSQL backends of its database):
on a shared machine the CPU per event is steadier than the rates.
The medians of the rounds are printed and written. Every event must be answered `accepted`, a
batch sent again must be answered `duplicate` throughout, and the store must hold every event
exactly once.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from bench.http_load import drive, request_bytes
from bench.ledger_up import RunningLedger, ledger_up
from infra.eventstore import COPY_TYPES

CUSTOMERS = 100
COLUMNS = (
    "originator_id, originator_version, topic, state, event_type, occurred_at, customer_id, source,"
    " actor, correlation_id, causation_id, reason, schema_version"
)
FORMAT = JSONFormat()
BATCH = "application/cloudevents-batch+json"
SINGLE = "application/cloudevents+json"


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


def batch_requests(prefix: str, events: int, token: str) -> list[bytes]:
    requests = []
    for start in range(0, events, 1000):
        chunk = [usage_event(n, prefix) for n in range(start, min(start + 1000, events))]
        body = b"[" + b",".join(FORMAT.write(e) for e in chunk) + b"]"
        requests.append(request_bytes("/v1/events", body, BATCH, token))
    return requests


def single_requests(prefix: str, count: int, token: str) -> list[bytes]:
    return [
        request_bytes("/v1/events", FORMAT.write(usage_event(n, prefix)), SINGLE, token) for n in range(count)
    ]


def counted(answers: list[tuple[int, bytes]], expected_status: int, status: str = "accepted") -> int:
    """How many events were answered `status`; any other answer stops the benchmark."""
    total = 0
    for code, body in answers:
        if code != expected_status:
            raise SystemExit(f"unexpected answer {code}: {body[:300]!r}")
        results = orjson.loads(body)["results"]
        if any(r["status"] != status for r in results):
            raise SystemExit(f"an event was not {status}: {body[:300]!r}")
        total += len(results)
    return total


# ---------------------------------------------------------------------------- raw PostgreSQL


def raw_rates(ledger: RunningLedger, rows: int, commits: int) -> tuple[float, float]:
    """COPY rows/s and single-row commits/s into a fresh copy of the events table (same columns,
    defaults and indexes), rows like the ledger's usage records."""
    now = datetime.now(UTC)
    payload = orjson.dumps(
        {
            "timestamp": now,
            "originator_topic": "domain.usage:UsageRecord",
            "customer_id": uuid.uuid4(),
            "metric": "api_calls",
            "value": "42",
            "idempotency_key": "bench-1",
            "properties": {"region": "eu", "endpoint": "/v1/search"},
            "occurred_at": now,
            "source": "bench",
            "content_hash": "0" * 32,
        }
    )
    customers = [uuid.uuid4() for _ in range(CUSTOMERS)]
    topic, kind = "domain.usage:UsageRecord.Recorded", "UsageRecord.Recorded"
    table = f"public.raw_events_{uuid.uuid4().hex[:8]}"
    with ledger.connect() as conn:
        conn.autocommit = False
        conn.execute(f"CREATE TABLE {table} (LIKE ledger.ledger_events INCLUDING DEFAULTS INCLUDING INDEXES)")
        conn.commit()
        try:
            start = time.perf_counter()
            with (
                conn.cursor() as cur,
                cur.copy(f"COPY {table} ({COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy,
            ):
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
        finally:
            conn.rollback()
            conn.execute(f"DROP TABLE {table}")
            conn.commit()
    return copy_rate, commit_rate


# ---------------------------------------------------------------------------- main


def prepare(ledger: RunningLedger) -> str:
    """Customers registered through the API; an ingest key."""
    with ledger.client() as client:
        for n in range(CUSTOMERS):
            answer = client.post(
                "/v1/customers",
                json={"external_id": f"customer-{n}", "email": f"c{n}@example.com", "currency": "EUR"},
            )
            if answer.status_code != 201:
                raise SystemExit(f"registering a customer failed: {answer.status_code} {answer.text}")
    return ledger.mint_key("ingest")


def usage_records(ledger: RunningLedger) -> tuple[int, int]:
    with ledger.connect() as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT originator_id) FROM ledger_events"
            " WHERE event_type = 'UsageRecord.Recorded'"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])  # type: ignore[call-overload]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-events", type=int, default=100_000, help="events per round, 1,000 a batch")
    parser.add_argument("--batch-clients", type=int, default=6)
    parser.add_argument("--single-requests", type=int, default=20_000, help="single events per round")
    parser.add_argument("--single-clients", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="measurements; the medians are reported")
    parser.add_argument(
        "--raw-commits", type=int, default=2000, help="single-row commits of the raw reference"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("LEDGER_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL server: `ledger up` gets a fresh database of its own there",
    )
    parser.add_argument("--json", type=Path, help="write the figures as JSON to this file")
    args = parser.parse_args()

    rounds: list[dict[str, float]] = []
    with ledger_up(args.database_url, label="bench_ingest") as ledger:
        with ledger.connect() as conn:
            durable = conn.execute("SHOW synchronous_commit").fetchone()
        if durable is None or durable[0] != "on":
            raise SystemExit("synchronous_commit must be on for a durable benchmark")
        token = prepare(ledger)
        warmup = single_requests("w", 500, token)
        drive(ledger.port, warmup, 16)
        expected = len(warmup)
        for r in range(args.rounds):
            copy_rate, commit_rate = raw_rates(ledger, max(args.batch_events, 1000), args.raw_commits)
            batches = batch_requests(f"b{r}", args.batch_events, token)
            ledger.followers_caught_up()
            cpu_before = ledger.cpu_seconds()
            seconds, answers = drive(ledger.port, batches, args.batch_clients, reconnect=True)
            batch_rate = counted(answers, 202) / seconds
            cpu_after = ledger.cpu_seconds()
            catch_up = ledger.followers_caught_up()
            cpu_caught_up = ledger.cpu_seconds()
            singles = single_requests(f"s{r}", args.single_requests, token)
            seconds, answers = drive(ledger.port, singles, args.single_clients)
            single_rate = counted(answers, 202) / seconds
            expected += args.batch_events + args.single_requests
            per_event = {
                f"batch_cpu_us_per_event_{part}": 1e6
                * (cpu_after[part] - cpu_before[part])
                / args.batch_events
                for part in cpu_before
            }
            per_event.update(
                {
                    f"catch_up_cpu_us_per_event_{part}": 1e6
                    * (cpu_caught_up[part] - cpu_after[part])
                    / args.batch_events
                    for part in cpu_before
                }
            )
            rounds.append(
                {
                    "raw_copy_rows_per_second": copy_rate,
                    "raw_single_row_commits_per_second": commit_rate,
                    "batch_events_per_second": batch_rate,
                    "batch_followers_caught_up_seconds_after": catch_up,
                    "batch_end_to_end_events_per_second": args.batch_events
                    / (args.batch_events / batch_rate + catch_up),
                    "single_requests_per_second": single_rate,
                    **per_event,
                    "load_average_1min": os.getloadavg()[0],
                }
            )
            print(
                f"round {r + 1}: batch {batch_rate:,.0f} events/s (raw COPY {copy_rate:,.0f} rows/s),"
                f" projector caught up {catch_up:.1f} s later;"
                f" single {single_rate:,.0f} requests/s (raw commits {commit_rate:,.0f}/s);"
                f" load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
        # Exactly once: a batch sent again is a duplicate throughout, and nothing is doubled.
        _, answers = drive(ledger.port, batch_requests("b0", min(args.batch_events, 1000), token), 1)
        counted(answers, 202, "duplicate")
        found, streams = usage_records(ledger)
        if found != expected or streams != expected:
            raise SystemExit(
                f"the store holds {found} usage records ({streams} streams), expected {expected}"
            )

    def median(name: str) -> float:
        return statistics.median(r[name] for r in rounds)

    figures: dict[str, Any] = {
        "date": datetime.now(UTC).date().isoformat(),
        "cores": os.cpu_count(),
        "server": "plain `ledger up` (default processes and settings), durable commits",
        "rounds": len(rounds),
        "batch_events": args.batch_events,
        "batch_clients": args.batch_clients,
        "single_requests": args.single_requests,
        "single_clients": args.single_clients,
        **{name: round(median(name), 1) for name in rounds[0]},
        "batch_ratio_to_raw_copy": round(
            median("batch_events_per_second") / median("raw_copy_rows_per_second"), 3
        ),
        "single_ratio_to_raw_commits": round(
            median("single_requests_per_second") / median("raw_single_row_commits_per_second"), 3
        ),
        "each_round": [{k: round(v, 1) for k, v in r.items()} for r in rounds],
    }
    print(f"ingest into a plain `ledger up`, durable (synchronous_commit on), {os.cpu_count()} cores;")
    print(f"medians of {len(rounds)} round(s)")
    print(f"raw PostgreSQL COPY rows/s                  : {figures['raw_copy_rows_per_second']:10,.0f}")
    print(
        f"raw PostgreSQL single-row commits/s         : {figures['raw_single_row_commits_per_second']:10,.0f}"
    )
    print(
        f"batch ingest events/s (1,000 a batch, {args.batch_clients} clients): "
        f"{figures['batch_events_per_second']:10,.0f}   ({figures['batch_ratio_to_raw_copy']:.2f} x raw COPY)"
    )
    print(
        f"single-event ingest requests/s ({args.single_clients} clients)   : "
        f"{figures['single_requests_per_second']:10,.0f}"
        f"   ({figures['single_ratio_to_raw_commits']:.2f} x raw single-row commits)"
    )
    cpu = {part: figures[f"batch_cpu_us_per_event_{part}"] for part in ("api", "followers", "postgres")}
    print(
        "CPU per event during the batches (us): "
        + ", ".join(f"{part} {value:.1f}" for part, value in cpu.items())
        + f"; the projector caught up {figures['batch_followers_caught_up_seconds_after']:.1f} s"
        f" after a round ({figures['batch_end_to_end_events_per_second']:,.0f} events/s end to end)"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
