"""The README's performance table, written from the benchmark scripts' JSON files.

    .venv/bin/python bench/report.py [--ingest FILE] [--commands FILE] [--projection FILE]
                                     [--simulate FILE] [--billing FILE] [--known-at FILE]
                                     [--memory FILE] [--machine TEXT]

Each FILE is what one run of that script wrote with `--json FILE`. The table printed (Markdown)
has one row per target of issue 16: the figure, the target and whether it is met, the raw
PostgreSQL reference measured in the same run, the ratio, and the command. Nothing here measures:
a row says only what its JSON holds, so the table cannot drift from the runs it names.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PY = ".venv/bin/python"
MIB = 1024**2


@dataclass(frozen=True)
class Row:
    path: str
    figure: str
    target: str
    met: bool
    raw: str
    ratio: str
    command: str


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f} ×"


def _met(met: bool) -> str:
    return "yes" if met else "no"


def ingest_rows(f: dict[str, Any], command: str) -> list[Row]:
    rounds = f.get("rounds", 1)
    of = f"median of {rounds} rounds" if rounds > 1 else "one round"
    batch, single = f["batch_events_per_second"], f["single_requests_per_second"]
    return [
        Row(
            f"CloudEvents batches (1,000 per request, {f['batch_clients']} clients,"
            f" {f['batch_events']:,} events) into a plain `ledger up`, durable",
            f"{_n(batch)} events/s ({of})",
            "≥ 60,000 events/s",
            batch >= 60_000,
            f"{_n(f['raw_copy_rows_per_second'])} rows/s binary COPY into a keyed table",
            _ratio(f.get("batch_ratio_to_raw_copy")),
            command,
        ),
        Row(
            f"single CloudEvents ({f['single_clients']} clients, {f['single_requests']:,} requests)",
            f"{_n(single)} requests/s ({of})",
            "≥ 5,000 requests/s",
            single >= 5_000,
            f"{_n(f['raw_single_row_commits_per_second'])} single-row durable commits/s, one connection",
            _ratio(f.get("single_ratio_to_raw_commits")),
            command,
        ),
    ]


def commands_rows(f: dict[str, Any], command: str) -> list[Row]:
    rounds = f.get("rounds", 1)
    of = f"median of {rounds} rounds" if rounds > 1 else "one round"
    http = f["http_commands_per_second"]
    return [
        Row(
            f"`POST /v1/customers` over HTTP, {f['clients']} clients, {f['commands']:,} commands",
            f"{_n(http)} requests/s ({of})",
            "≥ 2,000 requests/s",
            http >= 2_000,
            f"{_n(f['raw_single_row_commits_per_second'])} single-row commits/s on one connection;"
            f" {_n(f['raw_concurrent_commits_per_second'])}/s from {f['clients']}",
            _ratio(f.get("http_ratio_to_raw_concurrent_commits")),
            command,
        )
    ]


def projection_rows(f: dict[str, Any], command: str) -> list[Row]:
    raw = f["raw_pipelined_inserts_per_s"]
    history = f"{f['history_events']:,} events"
    rows = [
        Row(
            f"one projector process, Kafka → read models, {history}",
            f"{_n(f['projector_events_per_s'])} events/s",
            "≥ 50,000 events/s",
            f["projector_events_per_s"] >= 50_000,
            f"{_n(raw)} pipelined single-row inserts/s",
            _ratio(f["projector_ratio_to_raw"]),
            command,
        ),
        Row(
            f"`ledger replay`, {f['replay_workers']} workers, same history",
            f"{_n(f['replay_events_per_s_median'])} events/s"
            f" (median; best {_n(f['replay_events_per_s_best'])})",
            "≥ 100,000 events/s",
            f["replay_events_per_s_median"] >= 100_000,
            "same",
            _ratio(f["replay_ratio_to_raw"]),
            command,
        ),
    ]
    targets = {"1000": 100.0, "10000": 250.0}
    for rate, lag in f["lag"].items():
        reached = lag.get("writer_events_per_s")
        asked = f"{int(rate):,} events/s" + (f" (reached {_n(reached)})" if reached else "")
        limit = targets.get(rate)
        rows.append(
            Row(
                f"commit → visible through relay, Kafka and projector at {asked}",
                f"p50 {lag['p50_ms']:,.0f} ms, p99 {lag['p99_ms']:,.0f} ms ({lag['events']:,} events"
                + (f", {lag['not_visible']:,} never visible" if lag.get("not_visible") else "")
                + ")",
                f"p99 ≤ {limit:.0f} ms" if limit else "",
                limit is not None and lag["p99_ms"] <= limit,
                "",
                "",
                command,
            )
        )
    return rows


def simulate_rows(f: dict[str, Any], command: str) -> list[Row]:
    return [
        Row(
            f"`ledger simulate --customers {f['customers']:,} --months {f['months']} --seed {f['seed']}`:"
            f" {f['events']:,} events, {f['workers']} worker processes, {f['seconds']:,.0f} s",
            f"{_n(f['events_per_second'])} events/s",
            "≥ 20,000 events/s",
            f["events_per_second"] >= 20_000,
            f"{_n(f['raw_copy_rows_per_second'])} rows/s binary COPY of the same events",
            _ratio(f["ratio_to_raw"]),
            command,
        )
    ]


def billing_rows(f: dict[str, Any], command: str) -> list[Row]:
    return [
        Row(
            f"a billing day: {f['subscriptions']:,} subscriptions, {f['usage_records_per_subscription']}"
            " usage records each, billed and finalized as the test clock crosses the boundary",
            f"{_n(f['invoices_per_second'])} invoices/s"
            f" ({f['invoices_finalized']:,} in {f['seconds']:,.1f} s)",
            "≥ 830 invoices/s",
            f["invoices_per_second"] >= 830,
            f"{_n(f['raw_invoices_per_second_same_rows'])} invoices/s of raw inserts of the same rows",
            _ratio(f["ratio_to_raw"]),
            command,
        )
    ]


def known_at_rows(f: dict[str, Any], command: str) -> list[Row]:
    k = f["known_at_all"]
    endpoints = f["endpoints"]
    p95s = [e["known_at"]["p95"] for e in endpoints.values()]
    live = [e["raw_sql_live"]["p95"] for e in endpoints.values()]
    return [
        Row(
            f"`known_at` at {k['n']:,} new random moments ({len(endpoints)} endpoints) on a"
            f" {f['events']:,}-event history, over HTTP",
            f"p50 {k['p50']:,.1f} ms, p95 {k['p95']:,.1f} ms"
            f" (per endpoint p95 {min(p95s):,.0f}–{max(p95s):,.0f} ms)",
            "p95 ≤ 1,000 ms",
            k["p95"] <= 1_000,
            f"the same SQL on the live tables p95 {min(live):,.1f}–{max(live):,.1f} ms;"
            f" counting the events recorded by a moment (a replay's first step)"
            f" p50 {f['raw_count_recorded_by_moment']['p50']:,.0f} ms",
            "",
            command,
        )
    ]


def memory_rows(f: dict[str, Any], command: str) -> list[Row]:
    peak = f["peak_pss_bytes"]

    def parts(by_process: dict[str, int]) -> str:
        ordered = sorted(by_process.items(), key=lambda kv: -kv[1])
        return ", ".join(f"{name} {b / MIB:,.0f}" for name, b in ordered)

    return [
        Row(
            f"`ledger up` memory, all its processes, on a {f['history_events']:,}-event history:"
            " catching up from an empty broker, then answering reads and an analytics query",
            f"peak {peak / MIB:,.0f} MiB PSS (MiB by process: {parts(f['peak_pss_bytes_by_process'])});"
            f" summed RSS, which counts shared pages once per process, {f['peak_rss_bytes'] / MIB:,.0f} MiB",
            "< 1 GiB",
            peak < 1024 * MIB,
            f"the history in PostgreSQL: {f['history_bytes_in_postgresql'] / MIB:,.0f} MiB",
            _ratio(peak / f["history_bytes_in_postgresql"]),
            command,
        )
    ]


SCRIPTS: dict[str, tuple[str, Callable[[dict[str, Any], str], list[Row]]]] = {
    "ingest": (f"{PY} bench/ingest.py --rounds 1 --json FILE", ingest_rows),
    "commands": (f"{PY} bench/commands.py --rounds 1 --json FILE", commands_rows),
    "projection": (
        f"{PY} bench/projection.py --customers 1500 --months 12 --replay-runs 1 --json FILE",
        projection_rows,
    ),
    "simulate": (f"{PY} bench/simulate.py --customers 50000 --months 24 --seed 1 --json FILE", simulate_rows),
    "billing": (f"{PY} bench/billing.py --subscriptions 50000 --json FILE", billing_rows),
    "known_at": (
        f"{PY} bench/known_at.py --database-url URL --schema ledger --no-replay --json FILE",
        known_at_rows,
    ),
    "memory": (f"{PY} bench/memory.py --database-url URL --json FILE", memory_rows),
}


def render(rows: list[Row]) -> str:
    lines = [
        "| path | figure | target | met | raw PostgreSQL, same run | ratio to raw | command |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.path} | {r.figure} | {r.target} | {_met(r.met)} | {r.raw} | {r.ratio} | `{r.command}` |"
        )
    return "\n".join(lines)


def rows_from(files: dict[str, Path]) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    dates: list[str] = []
    for name, (command, make) in SCRIPTS.items():
        path = files.get(name)
        if path is None:
            continue
        figures = json.loads(path.read_text())
        dates.append(str(figures.get("date", "?"))[:10])
        rows.extend(make(figures, figures.get("command", command)))
    return rows, dates


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for name in SCRIPTS:
        flag = f"--{name.replace('_', '-')}"
        parser.add_argument(flag, dest=name, type=Path, help=f"JSON of bench/{name}.py")
    parser.add_argument("--machine", default="", help="a sentence on the machine and its load")
    args = parser.parse_args(argv)
    files = {name: getattr(args, name) for name in SCRIPTS if getattr(args, name) is not None}
    if not files:
        parser.error("give at least one JSON file")
    rows, dates = rows_from(files)
    span = min(dates) if min(dates) == max(dates) else f"{min(dates)} to {max(dates)}"
    met = sum(r.met for r in rows if r.target)
    targets = sum(1 for r in rows if r.target)
    print(f"Measured {span}{'; ' + args.machine if args.machine else ''}. {met} of {targets} targets met.\n")
    print(render(rows))


if __name__ == "__main__":
    main(sys.argv[1:])
