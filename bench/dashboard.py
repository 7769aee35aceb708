"""Dashboard speed in the system Chromium, on a history written by `ledger simulate`.

    .venv/bin/python bench/dashboard.py --customers 2000 --months 12 --json dashboard.json
    # on a history already there (a schema `ledger simulate` filled):
    .venv/bin/python bench/dashboard.py --schema ledger_bench --no-build

Figures (each page load in a fresh browser context, so nothing is cached):
- overview first contentful paint (ms) and overview chart drawn (ms), from navigation start;
- bytes transferred for the overview (the page, its assets and its API answers);
- per screen, the slowest API call it makes: that endpoint's p95 over the runs (ms), as the
  browser saw it (resource timing: request start to response end, while the screen's other calls
  run beside it), the same from the request leaving the browser (without the time it queued
  there), and the same call's p95 alone (30 calls one after another, keep-alive).
The read models' tables are ANALYZEd first, as autovacuum would have done in a running system.
The API is served as deployed: `ledger api --workers N` (`--api-workers`, default 2: one per core,
as `ledger up` starts them), in processes of its own beside the browser.
Targets of issue 14: each time under 1 s, under 300 KB, the slowest call's p95 under 50 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.browser import launch_chromium
from bench.ledger_up import free_port, stop, wait_until_serving
from infra.bootstrap import CORE_PROJECTION, bootstrap
from infra.settings import DatabaseAddress, Settings
from projections.runner import head_position, wait_for_position

REPO = Path(__file__).resolve().parents[1]
SCREENS = ("overview", "customers", "subscriptions", "payments", "invoices", "quotas", "alerts")
# What tells that a screen has loaded what it shows.
READY = {
    "overview": "#mrr-chart[data-drawn]",
    **{s: f"#main[data-screen={s}] [data-testid]:not([aria-busy]) tbody tr" for s in SCREENS[1:]},
}


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def build_history(url: str, schema: str, customers: int, months: int, seed: int) -> float:
    """`ledger simulate` into the schema; answers the seconds it took."""
    env = {**os.environ, "LEDGER_DATABASE_URL": url, "LEDGER_DATABASE_SCHEMA": schema}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "infra.cli", "simulate",
         "--customers", str(customers), "--months", str(months), "--seed", str(seed)],
        cwd=REPO,
        env=env,
        check=True,
    )  # fmt: skip
    return time.perf_counter() - started


@contextlib.contextmanager
def api_processes(database_url: str, schema: str, workers: int) -> Iterator[str]:
    """`ledger api --workers N` on the history, on a free loopback port, until the block ends;
    yields its base URL."""
    port = free_port()
    env = {**os.environ, "LEDGER_DATABASE_URL": database_url, "LEDGER_DATABASE_SCHEMA": schema}
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "api.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "infra.cli", "api", "--host", "127.0.0.1", "--port", str(port),
                 "--workers", str(workers)],
                cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT,
            )  # fmt: skip
            base = f"http://127.0.0.1:{port}"
            try:
                wait_until_serving(process, base, log)
                yield base
            finally:
                stop(process)


def load(browser: Any, base: str, key: str, screen: str) -> dict[str, Any]:
    """One cold load of a screen: paint and chart marks, bytes, and each API call's duration."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, locale="en-US")
    # Signed in for this tab, as the sign-in form leaves it (the key never goes in a URL).
    context.add_init_script(f"sessionStorage.setItem('ledger.apiKey', {json.dumps(key)})")
    page = context.new_page()
    try:
        page.goto(f"{base}/#/{screen}")
        page.wait_for_selector(READY[screen], timeout=60_000)
        page.wait_for_load_state("networkidle")
        timing = page.evaluate(
            """() => {
                const nav = performance.getEntriesByType('navigation')[0];
                const paint = performance.getEntriesByName('first-contentful-paint')[0];
                const chart = performance.getEntriesByName('mrr-chart-drawn')[0];
                const resources = performance.getEntriesByType('resource');
                return {
                    fcp: paint ? paint.startTime : null,
                    chart: chart ? chart.startTime : null,
                    bytes: nav.transferSize + resources.reduce((n, r) => n + r.transferSize, 0),
                    calls: resources.filter(r => new URL(r.name).pathname.startsWith('/v1/'))
                        .map(r => ({
                            url: r.name, path: new URL(r.name).pathname, ms: r.responseEnd - r.startTime,
                            sent_ms: r.responseEnd - r.requestStart,
                        })),
                };
            }"""
        )
    finally:
        context.close()
    return dict(timing)


def endpoint(path: str) -> str:
    """/v1/customers/3f2a... -> /v1/customers/{id}: one name per endpoint."""
    parts = ["{id}" if len(p) == 36 and p.count("-") == 4 else p for p in path.split("/")]
    return "/".join(parts)


def alone(url: str, key: str, runs: int = 30) -> float:
    """The same call again, one at a time (keep-alive, no browser): the p95 (ms) of the server's
    own work, without the screen's other calls competing for the same two cores."""
    samples = []
    with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        for _ in range(runs):
            started = time.perf_counter()
            http.get(url).raise_for_status()
            samples.append((time.perf_counter() - started) * 1000)
    return percentile(samples, 0.95)


def measure(base: str, key: str, runs: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            load(browser, base, key, "overview")  # warm the server (connections, plans), not the browser
            per_screen: dict[str, Any] = {}
            overview: dict[str, list[float]] = defaultdict(list)
            for screen in SCREENS:
                calls: dict[str, list[float]] = defaultdict(list)
                sent: dict[str, list[float]] = defaultdict(list)
                urls: dict[str, str] = {}
                for _ in range(runs):
                    found = load(browser, base, key, screen)
                    for call in found["calls"]:
                        calls[endpoint(call["path"])].append(call["ms"])
                        sent[endpoint(call["path"])].append(call["sent_ms"])
                        urls[endpoint(call["path"])] = call["url"]
                    if screen == "overview":
                        overview["fcp_ms"].append(found["fcp"])
                        overview["chart_drawn_ms"].append(found["chart"])
                        overview["bytes"].append(found["bytes"])
                p95 = {path: percentile(ms, 0.95) for path, ms in calls.items()}
                slowest = max(p95, key=lambda p: p95[p])
                per_screen[screen] = {
                    "slowest_call": slowest,
                    "p95_ms": round(p95[slowest], 1),
                    # From the request leaving the browser to the answer's end: the call without
                    # the time it queued in the browser behind the screen's other calls.
                    "p95_ms_sent": round(percentile(sent[slowest], 0.95), 1),
                    "p95_ms_alone": round(alone(urls[slowest], key), 1),
                    "calls": len(p95),
                }
        finally:
            browser.close()
    return {
        "overview": {
            "first_contentful_paint_ms_p50": round(percentile(overview["fcp_ms"], 0.5), 1),
            "chart_drawn_ms_p50": round(percentile(overview["chart_drawn_ms"], 0.5), 1),
            "first_contentful_paint_ms_max": round(max(overview["fcp_ms"]), 1),
            "chart_drawn_ms_max": round(max(overview["chart_drawn_ms"]), 1),
            "bytes_transferred": int(percentile(overview["bytes"], 0.5)),
        },
        "screens": per_screen,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=10, help="cold page loads per screen")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("LEDGER_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--schema", help="use this schema (default: a new one, dropped at the end)")
    parser.add_argument("--api-workers", type=int, default=2, help="processes of `ledger api`")
    parser.add_argument("--no-build", action="store_true", help="the schema holds a history already")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)

    schema = args.schema or f"dash_bench_{uuid.uuid4().hex[:8]}"
    address = DatabaseAddress(args.database_url)
    results: dict[str, Any] = {"runs": args.runs}
    try:
        if not args.no_build:
            results |= {"customers": args.customers, "months": args.months}
            results["simulate_seconds"] = round(
                build_history(args.database_url, schema, args.customers, args.months, args.seed), 1
            )
        settings = Settings(
            database_url=args.database_url,
            database_schema=schema,
            data_dir=Path("/tmp/ledger-dashboard-bench"),
            _env_file=None,  # type: ignore[call-arg]
        )
        container = bootstrap(settings, args.database_url, run_projection=True)
        head = head_position(container.pool)
        started = time.perf_counter()
        if not wait_for_position(container.pool, CORE_PROJECTION, head, 3600):
            raise SystemExit("the read models did not catch up")
        results["events"] = head
        results["projection_seconds"] = round(time.perf_counter() - started, 1)
        with container.pool.connection() as conn:
            # The statistics autovacuum keeps in a running system; fresh tables have none yet
            # and the planner would guess.
            tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
            for row in tables.fetchall():
                conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(row["tablename"])))
            # A history measured as found (--no-build) is described by what it holds.
            counted: Any = conn.execute("SELECT count(*) AS n FROM rm_customers").fetchone()
            results["customers"] = int(counted["n"])
        _, key = container.keys.mint(role="read", name="dashboard bench")
        container.close()
        results["api_workers"] = args.api_workers
        with api_processes(args.database_url, schema, args.api_workers) as base:
            results |= measure(base, key, args.runs)
    finally:
        if not args.schema:
            with psycopg.connect(address.conninfo(), autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))

    overview = results["overview"]
    months = f" x {results['months']} months" if "months" in results else ""
    print(f"history: {results['customers']:,} customers{months}, {results['events']:,} events")
    print(f"overview first contentful paint: {overview['first_contentful_paint_ms_p50']} ms (p50)")
    print(f"overview chart drawn:            {overview['chart_drawn_ms_p50']} ms (p50)")
    print(f"overview bytes transferred:      {overview['bytes_transferred']:,}")
    for screen, figures in results["screens"].items():
        print(
            f"{screen:14} slowest API call {figures['slowest_call']}: p95 {figures['p95_ms']} ms"
            f" in the browser ({figures['p95_ms_sent']} ms from the request sent),"
            f" {figures['p95_ms_alone']} ms alone"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
