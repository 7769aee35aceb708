"""Outgoing webhooks: deliveries per second to a local receiver and the time from an event's commit
to its delivery, beside a raw HTTP POST loop to the same receiver in the same run.

    .venv/bin/python bench/webhooks.py [--events 2000] [--latency-events 300] [--latency-rate 20]
        [--json FILE] [--database-url URL]

The receiver is a minimal ASGI app under uvicorn in a subprocess on a free port (it answers 200
and notes when each `webhook-id` arrived), so it does not share this process's interpreter with
the sender. Fresh schema; the fan-out and the dispatcher run in the background as `ledger up` runs
them (`LEDGER_WEBHOOKS_CONCURRENCY` attempts in flight, default 16). Figures:

- raw HTTP POST loop: the same receiver, bodies of the same size, from an httpx client with as many
  requests in flight as the dispatcher has (what sending alone costs here);
- deliveries/s: `--events` customers registered while the workers are stopped, then the workers
  started and timed until the receiver has every message (fan-out, signing, sending, recording);
- commit-to-delivery latency p50/p99: with the workers running, `--latency-events` customers
  registered at `--latency-rate` per second (each waking the workers as an API write does); the
  time from each command's return (its commit) to the receiver getting its message.
Each run checks that every event arrived exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from application import commands as c
from application.webhooks import CreateWebhookEndpoint
from infra.bootstrap import Container, bootstrap, start_webhooks
from infra.settings import Settings
from infra.webhook_store import message_id

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- the receiver

ARRIVALS: list[tuple[str, float]] = []


async def receiver_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers 200 to every POST, noting its webhook-id and when it arrived; GET answers them."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    if scope["method"] == "POST":
        headers = dict(scope["headers"])
        ARRIVALS.append((headers.get(b"webhook-id", b"").decode(), time.time()))
        body = b"ok"
    else:
        body = json.dumps(ARRIVALS).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]}
    )
    await send({"type": "http.response.body", "body": body})


def serve_receiver(port: int) -> None:
    import uvicorn

    uvicorn.run(receiver_app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_receiver() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "--serve-receiver", str(port)], cwd=ROOT)
    url = f"http://127.0.0.1:{port}/hooks"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return process, url
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("the receiver did not start")


def arrivals(url: str) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    for webhook_id, at in httpx.get(url, timeout=30).json():
        found.setdefault(webhook_id, []).append(at)
    return found


# ---------------------------------------------------------------------------- the figures


def raw_post_loop(url: str, n: int, concurrency: int, body: bytes) -> float:
    async def run() -> float:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency)) as client:
            queue = list(range(n))
            start = time.perf_counter()

            async def worker() -> None:
                while queue:
                    i = queue.pop()
                    response = await client.post(
                        url,
                        content=body,
                        headers={"webhook-id": f"raw_{i}", "content-type": "application/json"},
                    )
                    response.raise_for_status()

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return n / (time.perf_counter() - start)

    return asyncio.run(run())


def register(container: Container, prefix: str, i: int) -> tuple[str, float]:
    ctx = c.CommandContext(occurred_at=datetime.now(UTC), actor="bench")
    outcome = container.ledger.register_customer(
        c.RegisterCustomer(f"{prefix}-{i}", f"{prefix}{i}@example.com", "EUR"), ctx
    )
    committed = time.time()
    container.wake_projection()  # what an API write does after its commit
    return message_id(outcome.resource_id, 1), committed


def wait_for(url: str, ids: set[str], timeout: float) -> dict[str, list[float]]:
    deadline = time.monotonic() + timeout
    while True:
        found = arrivals(url)
        if ids <= set(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--latency-events", type=int, default=300)
    parser.add_argument("--latency-rate", type=float, default=20.0, help="events per second while timing")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--serve-receiver", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("LEDGER_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/ledger_bench"),
    )
    args = parser.parse_args()
    if args.serve_receiver:
        serve_receiver(args.serve_receiver)
        return

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    settings = Settings(  # type: ignore[call-arg]
        database_url=args.database_url,
        database_schema=schema,
        data_dir=Path(os.environ.get("TMPDIR", "/tmp")) / f"ledger-{schema}",
        webhooks_allow_private=True,
        _env_file=None,
    )
    receiver, url = start_receiver()
    container = bootstrap(settings, args.database_url, run_projection=False)
    try:
        endpoints = container.webhooks
        assert endpoints is not None
        ctx = c.CommandContext(occurred_at=datetime.now(UTC), actor="bench")
        endpoints.create(CreateWebhookEndpoint(url, ["customer.created"]), ctx)

        # Deliveries per second: a backlog written first, then drained by the workers.
        backlog = {register(container, "backlog", i)[0] for i in range(args.events)}
        sample_body = b"x" * 330  # about a customer.created message
        raw = raw_post_loop(url, args.events, settings.webhooks_concurrency, sample_body)
        started = time.time()
        start_webhooks(container)
        found = wait_for(url, backlog, timeout=max(120.0, args.events / 10))
        missing = backlog - set(found)
        if missing:
            raise SystemExit(f"{len(missing)} of the backlog never arrived")
        last = max(max(found[i]) for i in backlog)
        rate = args.events / (last - started)

        # Commit-to-delivery latency, workers running.
        committed: dict[str, float] = {}
        pace = time.monotonic()
        for i in range(args.latency_events):
            pace += 1 / args.latency_rate
            webhook_id, at = register(container, "live", i)
            committed[webhook_id] = at
            time.sleep(max(0.0, pace - time.monotonic()))
        found = wait_for(url, set(committed), timeout=120.0)
        latencies = [(found[i][0] - at) * 1000 for i, at in committed.items() if i in found]
        if len(latencies) != len(committed):
            raise SystemExit("some live events never arrived")
        duplicates = sum(len(found[i]) - 1 for i in set(backlog) | set(committed))
        if duplicates:
            raise SystemExit(f"{duplicates} messages arrived twice")
    finally:
        container.close()
        receiver.terminate()
        receiver.wait(timeout=30)

    results = {
        "events": args.events,
        "concurrency": settings.webhooks_concurrency,
        "raw_posts_per_second": round(raw, 1),
        "deliveries_per_second": round(rate, 1),
        "latency_events": args.latency_events,
        "latency_rate": args.latency_rate,
        "commit_to_delivery_ms_p50": round(statistics.median(latencies), 2),
        "commit_to_delivery_ms_p99": round(percentile(latencies, 0.99), 2),
    }
    print(f"raw HTTP POST loop ({settings.webhooks_concurrency} in flight): {raw:,.0f} requests/s")
    print(
        f"webhook deliveries (backlog of {args.events:,}): {rate:,.0f} deliveries/s ({rate / raw:.2f} x raw)"
    )
    print(
        f"commit to delivery ({args.latency_events} events at {args.latency_rate:g}/s):"
        f" p50 {results['commit_to_delivery_ms_p50']} ms, p99 {results['commit_to_delivery_ms_p99']} ms"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
