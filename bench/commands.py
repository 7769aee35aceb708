"""Command throughput: how many commands per second the ledger records durably, beside what raw
PostgreSQL does on the same server in the same run.

    .venv/bin/python bench/commands.py [--commands 2000] [--database-url URL]

Figures printed:
- raw PostgreSQL: single-row INSERT + COMMIT per row on one connection (synchronous_commit on);
- ledger use case: `register_customer` (load by natural key, decide, append with envelope), one
  connection, one command per transaction;
- ledger HTTP: POST /v1/customers through the ASGI app (auth, validation, use case, receipt).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient

from api.app import create_app
from application import commands as c
from infra.bootstrap import bootstrap
from infra.settings import DatabaseAddress, Settings


def raw_single_row_commits(url: str, schema: str, n: int) -> float:
    with psycopg.connect(DatabaseAddress(url).conninfo()) as conn:
        conn.execute(f"CREATE TABLE {schema}.raw_bench (id uuid PRIMARY KEY, body bytea)")
        conn.commit()
        payload = b'{"external_id":"x","email":"x@example.com","currency":"EUR"}'
        start = time.perf_counter()
        for _ in range(n):
            conn.execute(f"INSERT INTO {schema}.raw_bench VALUES (%s, %s)", (uuid.uuid4(), payload))
            conn.commit()
        return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--commands", type=int, default=2000)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("LEDGER_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/ledger_bench"),
    )
    args = parser.parse_args()
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    settings = Settings(database_url=args.database_url, database_schema=schema, _env_file=None)  # type: ignore[call-arg]
    container = bootstrap(settings, args.database_url, run_projection=False)
    n = args.commands
    try:
        raw = raw_single_row_commits(args.database_url, schema, n)

        ctx = c.CommandContext(occurred_at=datetime.now(UTC), actor="bench")
        start = time.perf_counter()
        for i in range(n):
            container.ledger.register_customer(
                c.RegisterCustomer(external_id=f"uc-{i}", email=f"u{i}@example.com", currency="EUR"), ctx
            )
        use_case = n / (time.perf_counter() - start)

        _, key = container.keys.mint(role="admin", name="bench")
        headers = {"Authorization": f"Bearer {key}"}
        with TestClient(create_app(lambda: container)) as client:
            start = time.perf_counter()
            for i in range(n):
                response = client.post(
                    "/v1/customers",
                    json={"external_id": f"http-{i}", "email": f"h{i}@example.com", "currency": "EUR"},
                    headers=headers,
                )
                assert response.status_code == 201, response.text
            http = n / (time.perf_counter() - start)
    finally:
        container.close()
        with psycopg.connect(DatabaseAddress(args.database_url).conninfo(), autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")

    print(f"commands: {n} each, one client, durable commits")
    print(f"raw PostgreSQL single-row commits/s : {raw:10.0f}")
    print(f"ledger use case commands/s          : {use_case:10.0f}   ({use_case / raw:.2f} x raw)")
    print(f"ledger HTTP commands/s              : {http:10.0f}   ({http / raw:.2f} x raw)")


if __name__ == "__main__":
    main()
