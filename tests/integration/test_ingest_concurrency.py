"""Exactly once under concurrency, through a real HTTP server: many clients re-sending
overlapping parts of the same events, retries interleaved, leave each event recorded once."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson
import pytest
from cloudevents.core.v1.event import CloudEvent

from application import commands as c
from infra.bootstrap import Container
from tests.conftest import bearer
from tests.integration.ingest_helpers import FORMAT, MOMENT
from tests.integration.live_server import live_server

EVENTS = 10_000
CLIENTS = 20
CHUNK = 100
CUSTOMERS = 20


@pytest.fixture
def server(container: Container) -> Iterator[str]:
    """The API on a free port, served by uvicorn in a thread, against the test's schema."""
    with live_server(container) as url:
        yield url


def _event(n: int) -> bytes:
    return FORMAT.write(
        CloudEvent(
            {
                "id": f"evt-{n}",
                "source": "saas-1",
                "type": "usage.recorded",
                "subject": f"customer-{n % CUSTOMERS}",
                "time": MOMENT,
            },
            {"metric": "api_calls", "value": n % 13},
        )
    )


def test_overlapping_resends_from_20_clients_record_each_of_10000_events_once(
    server: str, container: Container
) -> None:
    ctx = c.CommandContext(occurred_at=MOMENT)
    for n in range(CUSTOMERS):
        container.ledger.register_customer(
            c.RegisterCustomer(external_id=f"customer-{n}", email=f"c{n}@example.com", currency="EUR"), ctx
        )
    _, raw = container.keys.mint(role="ingest", name="saas")
    headers = bearer(raw)
    encoded = [_event(n) for n in range(EVENTS)]
    chunks = [list(range(start, start + CHUNK)) for start in range(0, EVENTS, CHUNK)]
    # Each chunk is sent by three clients; each client also re-sends some of its requests at
    # once (a retry after a lost answer) and sends some events one at a time.
    plans: list[list[list[int]]] = [[] for _ in range(CLIENTS)]
    for i, chunk in enumerate(chunks):
        for client in {i % CLIENTS, (i * 7 + 3) % CLIENTS, (i * 13 + 5) % CLIENTS}:
            plans[client].append(chunk)

    def run_client(number: int) -> list[tuple[int, dict[str, Any]]]:
        rng = random.Random(number)
        answers: list[tuple[int, dict[str, Any]]] = []
        requests: list[list[int]] = []
        for chunk in rng.sample(plans[number], len(plans[number])):
            requests.append(chunk)
            if rng.random() < 0.3:
                requests.append(chunk)  # the retry
            if rng.random() < 0.3:
                requests.extend([n] for n in rng.sample(chunk, 3))  # singles
        with httpx.Client(base_url=server, headers=headers, timeout=60) as http:
            for ids_ in requests:
                if len(ids_) == 1:
                    response = http.post(
                        "/v1/events",
                        content=encoded[ids_[0]],
                        headers={"Content-Type": "application/cloudevents+json"},
                    )
                else:
                    response = http.post(
                        "/v1/events",
                        content=b"[" + b",".join(encoded[n] for n in ids_) + b"]",
                        headers={"Content-Type": "application/cloudevents-batch+json"},
                    )
                answers.append((response.status_code, orjson.loads(response.content)))
        return answers

    with ThreadPoolExecutor(CLIENTS) as pool:
        all_answers = [a for answers in pool.map(run_client, range(CLIENTS)) for a in answers]

    assert {status for status, _ in all_answers} == {202}
    outcomes: dict[str, Counter[str]] = {}
    for _, body in all_answers:
        for result in body["results"]:
            outcomes.setdefault(result["id"], Counter())[result["status"]] += 1
    assert len(outcomes) == EVENTS
    assert all(counts["accepted"] == 1 for counts in outcomes.values())
    assert all(set(counts) <= {"accepted", "duplicate"} for counts in outcomes.values())
    assert sum(sum(counts.values()) for counts in outcomes.values()) > 2 * EVENTS  # it did overlap
    with container.pool.connection() as conn:
        row: Any = conn.execute(
            "SELECT count(*) AS n, count(DISTINCT originator_id) AS streams FROM ledger_events"
            " WHERE event_type = 'UsageRecord.Recorded'"
        ).fetchone()
    assert (row["n"], row["streams"]) == (EVENTS, EVENTS)
    committer = container.ingest_committer
    assert committer is not None
    assert committer.groups < committer.jobs  # concurrent requests shared commits
