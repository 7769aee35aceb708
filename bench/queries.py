"""Query latency of the metrics read models over HTTP, beside raw PostgreSQL in the same run.

    # on a history of your own (for example one written by `ledger simulate`):
    .venv/bin/python bench/queries.py --database-url postgresql://postgres@127.0.0.1:5432/ledger_bench
    # or build a small one first:
    .venv/bin/python bench/queries.py --customers 300 --months 24

Figures printed:
- replay events/s: the read models (core and metrics) rebuilt from the store, unless --no-replay
  and they are already up to date;
- GET /v1/metrics/mrr over 365 days, and GET /v1/receivables as of a random day of the history
  (first page of 100 invoices and the totals), p50 / p95 / p99 over real HTTP (uvicorn in this
  process, keep-alive client), and the ratio to the same SQL run straight on PostgreSQL;
- the identities of SPEC section 4 checked on every day of the history: mrr(D) = mrr(D-1) +
  movements, and the daily totals equal the sum of the customers' movements.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import psycopg
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.app import create_app
from application.simulation import Simulation
from infra.bootstrap import CORE_PROJECTION, Container, bootstrap
from infra.embedded import free_port
from infra.settings import DatabaseAddress, Settings
from projections import metric_queries as mq
from projections.mrr import days_whose_totals_differ
from projections.replay import replay
from projections.runner import head_position


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "mean": statistics.fmean(ordered) * 1000}


def timed(call: Any, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def serve(container: Container) -> tuple[str, uvicorn.Server]:
    port = free_port()
    app = create_app(lambda: container)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise SystemExit("the API did not start")
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def check_identities(conn: psycopg.Connection[Any], currency: str, first: date, last: date) -> int:
    rows = mq.mrr_series(conn, currency, first, last)
    for previous, row in pairwise(rows):
        expected = (
            previous["mrr"]
            + row["new"]
            + row["expansion"]
            + row["reactivation"]
            - row["contraction"]
            - row["churn"]
        )
        if row["mrr"] != expected:
            raise SystemExit(f"identity broken on {row['date']}: {row['mrr']} != {expected}")
    if days_whose_totals_differ(conn):
        raise SystemExit("daily totals differ from the sum of movements")
    return len(rows)


def every_endpoint_answers(http: httpx.Client, currency: str, today: date) -> list[str]:
    customer = http.get("/v1/customers", params={"limit": 1}).json()["data"][0]["id"]
    paths = {
        "summary": ("/v1/metrics/summary", {"currency": currency}),
        "mrr": ("/v1/metrics/mrr", {"currency": currency}),
        "movements": (
            "/v1/metrics/mrr/movements",
            {"date": str(today - timedelta(days=1)), "currency": currency},
        ),
        "churn": ("/v1/metrics/churn", {"currency": currency}),
        "receivables": ("/v1/receivables", {"currency": currency}),
        "quotas": ("/v1/usage/quotas", {}),
        "entitlements": (f"/v1/customers/{customer}/entitlements/api_calls", {}),
        "customers": ("/v1/customers", {}),
        "subscriptions": ("/v1/subscriptions", {}),
        "invoices": ("/v1/invoices", {}),
        "payments": ("/v1/payments", {"status": "failed"}),
        "alerts": ("/v1/alerts", {}),
    }
    for name, (path, params) in paths.items():
        response = http.get(path, params=params)
        if response.status_code != 200:
            raise SystemExit(f"{name}: {response.status_code} {response.text[:300]}")
    return list(paths)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=os.environ.get("LEDGER_DATABASE_URL"))
    parser.add_argument("--schema", default="ledger")
    parser.add_argument("--customers", type=int, default=300, help="history to build when none is given")
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--no-replay", action="store_true", help="the read models are up to date already")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    url = args.database_url or "postgresql://postgres@127.0.0.1:5432/postgres"
    schema = args.schema if args.database_url else f"bench_queries_{int(time.time())}"
    settings = Settings(
        database_url=url,
        database_schema=schema,
        database_pool_size=4,
        _env_file=None,  # type: ignore[call-arg]
    )
    container = bootstrap(settings, url, run_projection=False)
    conninfo = DatabaseAddress(url).conninfo()
    try:
        if not args.database_url:
            print(f"building a history of {args.customers} customers over {args.months} months ...")
            Simulation(container.ledger, customers=args.customers, months=args.months, seed=7).run()
        head = head_position(container.pool)
        with container.pool.connection() as conn:
            events: Any = conn.execute("SELECT count(*) AS n FROM ledger_events").fetchone()
            customers: Any = conn.execute("SELECT count(*) AS n FROM rm_customers").fetchone()
        if not args.no_replay:
            start = time.perf_counter()
            replay(conninfo, schema, CORE_PROJECTION, workers=args.workers)
            elapsed = time.perf_counter() - start
            print(
                f"replay (core + metrics), {args.workers} workers: {events['n'] / elapsed:,.0f} events/s"
                f" ({events['n']:,} events in {elapsed:,.1f} s)"
            )
        with container.pool.connection() as conn:
            customers = conn.execute("SELECT count(*) AS n FROM rm_customers").fetchone()
            span: Any = conn.execute(
                "SELECT min(day) AS first, max(day) AS last FROM rm_mrr_daily"
            ).fetchone()
            busiest: Any = conn.execute(
                "SELECT currency FROM rm_mrr_movements GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
            ).fetchone()
            currency = busiest["currency"]
            today = min(datetime.now(UTC).date(), span["last"])
            days = check_identities(conn, currency, span["first"], today)
            rows: Any = conn.execute(
                "SELECT (SELECT count(*) FROM rm_mrr_movements) AS movements,"
                " (SELECT count(*) FROM rm_receivable_spans) AS spans,"
                " (SELECT count(*) FROM rm_invoices) AS invoices"
            ).fetchone()
        print(
            f"history: {events['n']:,} events (head {head:,}), {customers['n']:,} customers,"
            f" {rows['invoices']:,} invoices, {rows['movements']:,} MRR movements,"
            f" {rows['spans']:,} receivable spans; identities hold on all {days} days ({currency})"
        )

        _, raw_key = container.keys.mint(role="read", name="bench")
        base, server = serve(container)
        first_day = today - timedelta(days=364)
        rng = random.Random(1)
        history_days = (today - span["first"]).days
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {raw_key}"}) as http:

            def mrr() -> None:
                r = http.get(
                    "/v1/metrics/mrr", params={"from": str(first_day), "to": str(today), "currency": currency}
                )
                r.raise_for_status()

            def receivables() -> None:
                as_of = span["first"] + timedelta(days=rng.randrange(history_days + 1))
                r = http.get("/v1/receivables", params={"as_of": str(as_of), "currency": currency})
                r.raise_for_status()

            answered = every_endpoint_answers(http, currency, today)
            print(f"every query endpoint answered 200: {', '.join(answered)}")
            for call in (mrr, receivables):
                timed(call, 20)  # warm up: connections, prepared plans
            mrr_http = percentiles(timed(mrr, args.runs))
            receivables_http = percentiles(timed(receivables, args.runs))
        server.should_exit = True

        with psycopg.connect(conninfo, row_factory=psycopg.rows.dict_row) as conn:
            conn.execute(f"SET search_path TO {schema}")

            def mrr_sql() -> None:
                mq.mrr_series(conn, currency, first_day, today)

            def receivables_sql() -> None:
                as_of = span["first"] + timedelta(days=rng.randrange(history_days + 1))
                mq.receivables(conn, as_of, currency, None, None, 100)

            def round_trip() -> None:
                conn.execute("SELECT 1").fetchone()

            for call in (mrr_sql, receivables_sql):
                timed(call, 20)
            mrr_raw = percentiles(timed(mrr_sql, args.runs))
            receivables_raw = percentiles(timed(receivables_sql, args.runs))
            trip = percentiles(timed(round_trip, args.runs))

        def line(name: str, http: dict[str, float], raw: dict[str, float]) -> None:
            print(
                f"{name:<34} p50 {http['p50']:6.2f} ms  p95 {http['p95']:6.2f} ms  p99 {http['p99']:6.2f} ms"
                f"   | same SQL on PostgreSQL p50 {raw['p50']:5.2f} ms p95 {raw['p95']:5.2f} ms"
                f"   | HTTP/raw p95 x{http['p95'] / raw['p95']:.1f}"
            )

        print(f"{args.runs} requests each, target p95 <= 20 ms")
        line("GET /v1/metrics/mrr (365 days)", mrr_http, mrr_raw)
        line("GET /v1/receivables (random as_of)", receivables_http, receivables_raw)
        print(f"raw PostgreSQL round trip (SELECT 1): p50 {trip['p50']:.3f} ms, p95 {trip['p95']:.3f} ms")
    finally:
        container.close()
        if not args.database_url:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


if __name__ == "__main__":
    main()
