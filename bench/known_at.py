"""`known_at` latency at new moments, beside the live answer and raw PostgreSQL in the same run.

    # on a history of your own (for example one written by `ledger simulate`, then `ledger replay`):
    .venv/bin/python bench/known_at.py --database-url postgresql://postgres@127.0.0.1:5432/ledger_knownat \
        --schema ledger --no-replay [--moments 60] [--check 1] [--json FILE]
    # or build a small one first:
    .venv/bin/python bench/known_at.py --customers 300 --months 12

Figures printed:
- per endpoint answering `known_at` from versions (MRR over 365 days, churn over 30 days, the
  movements of a day, receivables as of a day), p50 / p95 / max over real HTTP (uvicorn in this
  process, keep-alive client, an audit key), each request at a new random moment of the history's
  recording time (no two alike, no cache between them);
- the same requests without `known_at` (the live read models) over HTTP, and the same SQL run
  straight on PostgreSQL over the live read models: the raw reference, and the ratios;
- the raw cost any replay per moment pays before projecting anything: counting the events
  recorded by a moment (a scan: there is no index on recorded_at);
- with --check N: N moments also answered from a full replay snapshot (the oracle; minutes on a
  big history), its build time, and whether the answers are equal;
- the storage of the versions (the `_retired` tables) beside the live tables they version.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from application.simulation import Simulation
from bench.queries import serve
from infra.bootstrap import CORE_PROJECTION, bootstrap
from infra.settings import DatabaseAddress, Settings
from projections import known_at as known
from projections import metric_queries as mq
from projections.replay import replay
from projections.snapshots import known_at_snapshot, reading_snapshot

VERSIONED = ("rm_mrr_movements", "rm_receivable_spans")


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {
        "p50": at(0.50),
        "p95": at(0.95),
        "max": ordered[-1] * 1000,
        "mean": statistics.fmean(ordered) * 1000,
        "n": len(ordered),
    }


def timed(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def storage(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for table in VERSIONED:
        row: Any = conn.execute(
            f"SELECT pg_total_relation_size('{table}') AS live_bytes,"
            f" pg_total_relation_size('{table}_retired') AS retired_bytes,"
            f" (SELECT count(*) FROM {table}) AS live_rows,"
            f" (SELECT count(*) FROM {table}_retired) AS retired_rows"
        ).fetchone()
        found[table] = {k: int(v) for k, v in row.items()}
    total: Any = conn.execute(
        "SELECT sum(pg_total_relation_size(c.oid)) AS b FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname LIKE 'rm\\_%'"
    ).fetchone()
    found["all_read_models_bytes"] = int(total["b"] or 0)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=os.environ.get("LEDGER_DATABASE_URL"))
    parser.add_argument("--schema", default="ledger")
    parser.add_argument("--customers", type=int, default=300, help="history to build when none is given")
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--build", action="store_true", help="build a history even with --database-url")
    parser.add_argument("--moments", type=int, default=60, help="new moments asked per endpoint")
    parser.add_argument("--check", type=int, default=1, help="moments also answered by a full replay")
    parser.add_argument("--no-replay", action="store_true", help="the read models are up to date already")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()

    url = args.database_url or "postgresql://postgres@127.0.0.1:5432/postgres"
    build = args.build or not args.database_url
    schema = f"bench_known_at_{int(time.time())}" if build else args.schema
    settings = Settings(
        database_url=url,
        database_schema=schema,
        database_pool_size=4,
        _env_file=None,  # type: ignore[call-arg]
    )
    container = bootstrap(settings, url, run_projection=False)
    conninfo = DatabaseAddress(url).conninfo()
    figures: dict[str, Any] = {
        "date": datetime.now(UTC).date().isoformat(),
        "cores": os.cpu_count(),
        "schema": schema,
        "load_average": os.getloadavg(),
    }
    try:
        if build:
            print(f"building a history of {args.customers} customers over {args.months} months ...")
            Simulation(container.ledger, customers=args.customers, months=args.months, seed=7).run()
        if build or not args.no_replay:
            elapsed = timed(lambda: replay(conninfo, schema, CORE_PROJECTION, workers=args.workers))
            figures["replay_seconds"] = elapsed
            print(f"replay (read models with their versions), {args.workers} workers: {elapsed:,.1f} s")
        with container.pool.connection() as conn:
            span: Any = conn.execute(
                "SELECT count(*) AS events, min(recorded_at) AS first, max(recorded_at) AS last"
                " FROM ledger_events"
            ).fetchone()
            days: Any = conn.execute(
                "SELECT min(day) AS first, max(day) AS last FROM rm_mrr_daily"
            ).fetchone()
            busiest: Any = conn.execute(
                "SELECT currency FROM rm_mrr_movements GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
            ).fetchone()
            figures["storage"] = storage(conn)
            warm = time.perf_counter()
            ready = known.position_at(conn, schema, span["last"]) is not None and known.versions_complete(
                conn
            )
            figures["first_walk_seconds"] = time.perf_counter() - warm
        if not ready:
            raise SystemExit("the read models carry no complete versions: run `ledger replay` first")
        currency = busiest["currency"]
        first_day, last_day = days["first"], days["last"]
        history_days = max(1, (last_day - first_day).days)
        figures.update(
            events=int(span["events"]), currency=currency, first_day=str(first_day), last_day=str(last_day)
        )
        print(
            f"history: {span['events']:,} events recorded {span['first']:%Y-%m-%d %H:%M:%S} .."
            f" {span['last']:%H:%M:%S}, MRR days {first_day} .. {last_day} ({currency});"
            f" first walk of the log (once per process) {figures['first_walk_seconds']:.2f} s"
        )
        for table in VERSIONED:
            s = figures["storage"][table]
            print(
                f"  {table}: {s['live_rows']:,} live rows ({s['live_bytes'] / 2**20:,.1f} MiB),"
                f" {s['retired_rows']:,} retired versions ({s['retired_bytes'] / 2**20:,.1f} MiB)"
            )
        print(f"  all read models: {figures['storage']['all_read_models_bytes'] / 2**20:,.1f} MiB")

        rng = random.Random(16)
        seconds = max(1e-6, (span["last"] - span["first"]).total_seconds())
        seen: set[datetime] = set()

        def new_moment() -> datetime:
            while True:
                moment = span["first"] + timedelta(seconds=rng.uniform(0, seconds))
                if moment not in seen:
                    seen.add(moment)
                    return moment

        def a_day() -> date:
            return first_day + timedelta(days=rng.randrange(history_days + 1))

        year_from = max(first_day, last_day - timedelta(days=364))
        requests: dict[str, Callable[[], tuple[str, dict[str, Any]]]] = {
            "mrr_365_days": lambda: (
                "/v1/metrics/mrr",
                {"from": str(year_from), "to": str(last_day), "currency": currency},
            ),
            "churn_30_days": lambda: (
                "/v1/metrics/churn",
                {
                    "from": str(last_day - timedelta(days=29)),
                    "to": str(last_day + timedelta(days=1)),
                    "currency": currency,
                },
            ),
            "movements_of_a_day": lambda: (
                "/v1/metrics/mrr/movements",
                {"date": str(a_day()), "currency": currency},
            ),
            "receivables_as_of_a_day": lambda: (
                "/v1/receivables",
                {"as_of": str(a_day()), "currency": currency},
            ),
        }
        raw_sql: dict[str, Callable[[psycopg.Connection[Any]], Any]] = {
            "mrr_365_days": lambda c: mq.mrr_series(c, currency, year_from, last_day),
            "churn_30_days": lambda c: mq.churn(
                c, currency, last_day - timedelta(days=29), last_day + timedelta(days=1)
            ),
            "movements_of_a_day": lambda c: mq.mrr_movements(c, currency, a_day(), None, None, 200),
            "receivables_as_of_a_day": lambda c: mq.receivables(c, a_day(), currency, None, None, 100),
        }

        _, audit_key = container.keys.mint(role="audit", name="bench known_at")
        base, server = serve(container)
        known_samples: dict[str, list[float]] = {name: [] for name in requests}
        live_samples: dict[str, list[float]] = {name: [] for name in requests}
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {audit_key}"}, timeout=600
        ) as http:

            def ask(name: str, moment: datetime | None) -> None:
                path, params = requests[name]()
                if moment is not None:
                    params["known_at"] = moment.isoformat()
                response = http.get(path, params=params)
                if response.status_code != 200:
                    raise SystemExit(f"{name}: {response.status_code} {response.text[:300]}")

            for name in requests:  # warm up: connections, views, plans
                ask(name, None)
                ask(name, new_moment())
            for _ in range(args.moments):
                for name in requests:
                    known_samples[name].append(timed(lambda n=name: ask(n, new_moment())))  # type: ignore[misc]
                    live_samples[name].append(timed(lambda n=name: ask(n, None)))  # type: ignore[misc]
        server.should_exit = True

        raw_samples: dict[str, list[float]] = {name: [] for name in requests}
        with psycopg.connect(conninfo, row_factory=dict_row) as conn:
            conn.execute(f"SET search_path TO {schema}")
            for name, call in raw_sql.items():
                call(conn)
                raw_samples[name] = [timed(lambda c=call: c(conn)) for _ in range(args.moments)]  # type: ignore[misc]
            scans = [
                timed(
                    lambda: conn.execute(
                        "SELECT count(*) FROM ledger_events WHERE recorded_at <= %s", (new_moment(),)
                    )
                )
                for _ in range(5)
            ]
        scan = percentiles(scans)

        results: dict[str, Any] = {}
        print(f"{args.moments} new moments per endpoint (target: known_at p95 <= 1000 ms)")
        for name in requests:
            k, live, raw = (percentiles(s[name]) for s in (known_samples, live_samples, raw_samples))
            results[name] = {
                "known_at": k,
                "live_http": live,
                "raw_sql_live": raw,
                "ratio_known_at_to_raw_p95": k["p95"] / raw["p95"],
                "ratio_known_at_to_live_http_p95": k["p95"] / live["p95"],
            }
            print(
                f"  known_at {name:<24} p50 {k['p50']:7.1f} ms p95 {k['p95']:7.1f} ms max {k['max']:7.1f} ms"
                f" | live HTTP p95 {live['p95']:6.1f} ms | raw SQL (live tables) p95 {raw['p95']:6.1f} ms"
                f" | known_at/raw x{k['p95'] / raw['p95']:.1f}"
            )
        all_known = [x for s in known_samples.values() for x in s]
        figures["known_at_all"] = percentiles(all_known)
        figures["endpoints"] = results
        figures["raw_count_recorded_by_moment"] = scan
        print(
            f"  all known_at requests: p50 {figures['known_at_all']['p50']:.1f} ms,"
            f" p95 {figures['known_at_all']['p95']:.1f} ms; raw count of the events recorded by a moment"
            f" (what a replay per moment reads first): p50 {scan['p50']:.1f} ms"
        )

        checks = []
        for _ in range(args.check):
            moment = new_moment()
            start = time.perf_counter()
            snapshot = known_at_snapshot(conninfo, schema, moment, workers=args.workers)
            built = time.perf_counter() - start
            day = a_day()
            # The API's pool closed with its server: connections of our own, on the same schema.
            with psycopg.connect(conninfo, row_factory=dict_row, autocommit=True) as conn:
                conn.execute(f"SET search_path TO {schema}")
                position = known.position_at(conn, schema, moment)
                if position is None:
                    raise SystemExit("recorded_at went back: known_at answers from a replay")
                with known.reading_known(conn, schema, position):
                    fast = [call(conn) for call in _fixed(currency, year_from, last_day, day)]
                conn.execute(f"SET search_path TO {schema}")
                with reading_snapshot(conn, snapshot, schema):
                    replayed = [call(conn) for call in _fixed(currency, year_from, last_day, day)]
                conn.execute(f'DROP SCHEMA "{snapshot}" CASCADE')
            checks.append({"moment": moment.isoformat(), "replay_seconds": built, "equal": fast == replayed})
            print(
                f"  full replay snapshot at {moment:%H:%M:%S.%f}: {built:,.1f} s"
                f" ({workers_note(args.workers)}); answers equal to known_at from versions:"
                f" {fast == replayed}"
            )
        figures["oracle_checks"] = checks
        if any(not c["equal"] for c in checks):
            raise SystemExit("known_at from versions differs from the full replay")
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2, default=str))
    finally:
        container.close()
        if build:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
                conn.execute(f"DROP SCHEMA IF EXISTS {known.views_schema(schema)} CASCADE")


def workers_note(workers: int) -> str:
    return f"{workers} worker{'s' if workers != 1 else ''}"


def _fixed(currency: str, first: date, last: date, day: date) -> list[Callable[[Any], Any]]:
    return [
        lambda c: mq.currencies(c),
        lambda c: mq.mrr_series(c, currency, first, last),
        lambda c: mq.churn(c, currency, last - timedelta(days=29), last + timedelta(days=1)),
        lambda c: mq.mrr_movements(c, currency, day, None, None, 1000),
        lambda c: mq.receivables(c, day, currency, None, None, 1000),
    ]


if __name__ == "__main__":
    main()
