"""Commands from concurrent clients share transactions (one flush of the log for many requests),
through a real HTTP server, and each still lands exactly once: the commands that arrive while one
transaction is being written are written together in the next; one that loses a race fails
alone, with its own answer, and the others of its transaction are recorded all the same."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
import psycopg

from domain import ids
from infra.bootstrap import Container
from tests.integration.live_server import live_server

CLIENTS = 12


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    """Until the requests got where the test needs them (bounded; not a timing assertion)."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.005)


@contextmanager
def log_held(container: Container) -> Iterator[Callable[[], int]]:
    """The event log locked as an append locks it, by another session: appends wait behind it
    until the block ends. Yields how many appends are waiting for the lock in PostgreSQL."""
    schema = container.settings.database_schema
    with (
        psycopg.connect(container.address.conninfo()) as holder,
        psycopg.connect(container.address.conninfo(), autocommit=True) as watcher,
    ):
        holder.execute(f"LOCK TABLE {schema}.ledger_events IN EXCLUSIVE MODE")

        def blocked() -> int:
            row = watcher.execute(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = %s::regclass",
                (f"{schema}.ledger_events",),
            ).fetchone()
            return int(row[0]) if row else 0

        try:
            yield blocked
        finally:
            holder.rollback()


def _register(http: httpx.Client, external_id: str, email: str) -> httpx.Response:
    return http.post("/v1/customers", json={"external_id": external_id, "email": email, "currency": "EUR"})


def _registrations(container: Container) -> dict[str, tuple[int, str]]:
    """external_id -> (how many registrations, the transaction id that wrote the first)."""
    schema = container.settings.database_schema
    with psycopg.connect(container.address.conninfo()) as conn:
        rows = conn.execute(
            f"SELECT convert_from(state, 'UTF8')::jsonb ->> 'external_id', count(*), min(xmin::text)"
            f" FROM {schema}.ledger_events WHERE event_type = 'Customer.Registered' GROUP BY 1"
        ).fetchall()
    return {external_id: (int(count), xmin) for external_id, count, xmin in rows}


def _send_behind_a_held_log(
    container: Container, admin: dict[str, str], first: tuple[str, str], others: list[tuple[str, str]]
) -> tuple[httpx.Response, list[httpx.Response]]:
    """`first` becomes the append that waits for the lock; `others` arrive while it waits, so they
    queue for the next transaction. Then the lock is released."""
    with (
        live_server(container) as url,
        httpx.Client(base_url=url, headers=admin, timeout=60) as http,
        ThreadPoolExecutor(max_workers=len(others) + 1) as pool,
    ):
        with log_held(container) as blocked:
            leader: Future[httpx.Response] = pool.submit(_register, http, *first)
            _wait_until(lambda: blocked() == 1, "the first append waits for the log")
            queued = [pool.submit(_register, http, *other) for other in others]
            _wait_until(lambda: container.ledger.store.appends_waiting == len(others), "all others queued")
        return leader.result(60), [f.result(60) for f in queued]


def test_commands_arriving_while_one_is_written_share_the_next_transaction_each_recorded_once(
    container: Container, admin: dict[str, str]
) -> None:
    others = [(f"acme-{n}", f"billing{n}@acme.io") for n in range(CLIENTS)]
    leader, answers = _send_behind_a_held_log(container, admin, ("first", "first@acme.io"), others)

    assert leader.status_code == 201, leader.text
    assert [a.status_code for a in answers] == [201] * CLIENTS, [a.text for a in answers]
    positions = [a.json()["position"] for a in answers]
    assert len(set(positions)) == CLIENTS and min(positions) > leader.json()["position"]
    recorded = _registrations(container)
    assert {external_id: count for external_id, (count, _) in recorded.items()} == {
        "first": 1,
        **{external_id: 1 for external_id, _ in others},
    }
    # The queued commands were written in one transaction, after the first one's.
    transactions = {xmin for external_id, (_, xmin) in recorded.items() if external_id != "first"}
    assert len(transactions) == 1 and recorded["first"][1] not in transactions


def test_a_command_that_loses_a_race_in_a_shared_transaction_fails_alone_with_its_own_answer(
    container: Container, admin: dict[str, str]
) -> None:
    """Two registrations of one external_id with different e-mails, in the same transaction as
    others: the transaction cannot be written as a whole, so each command is written on its own;
    one registration wins, the other is answered 409 as if it had come second, and every other
    command of the transaction is recorded."""
    others = [(f"acme-{n}", f"billing{n}@acme.io") for n in range(CLIENTS)]
    contested = [("globex", "ap@globex.io"), ("globex", "finance@globex.io")]
    leader, answers = _send_behind_a_held_log(
        container, admin, ("first", "first@acme.io"), others[:5] + contested + others[5:]
    )

    assert leader.status_code == 201, leader.text
    by_id: dict[tuple[str, str], Any] = dict(zip(others[:5] + contested + others[5:], answers, strict=True))
    assert all(by_id[other].status_code == 201 for other in others), [a.text for a in answers]
    contest = sorted(by_id[c].status_code for c in contested)
    assert contest == [201, 409], [by_id[c].text for c in contested]
    loser = next(by_id[c] for c in contested if by_id[c].status_code == 409)
    assert loser.headers["content-type"].startswith("application/problem+json")
    assert loser.json()["errors"][0]["field"] == "external_id"
    recorded = _registrations(container)
    assert {external_id: count for external_id, (count, _) in recorded.items()} == {
        "first": 1,
        "globex": 1,
        **{external_id: 1 for external_id, _ in others},
    }
    winner_email = next(c[1] for c in contested if by_id[c].status_code == 201)
    schema = container.settings.database_schema
    with psycopg.connect(container.address.conninfo()) as conn:
        stored = conn.execute(
            f"SELECT convert_from(state, 'UTF8')::jsonb ->> 'email' FROM {schema}.ledger_events"
            " WHERE originator_id = %s AND originator_version = 1",
            (ids.customer_id("globex"),),
        ).fetchone()
    assert stored == (winner_email,)


def test_many_clients_registering_at_once_are_each_recorded_exactly_once(
    container: Container, admin: dict[str, str]
) -> None:
    """No lock held: whatever groups form, every command is answered and recorded once, and a
    retry of every command (same body) answers as the first time and records nothing."""
    customers = [(f"client-{n}", f"c{n}@example.com") for n in range(120)]
    with (
        live_server(container) as url,
        httpx.Client(base_url=url, headers=admin, timeout=60) as http,
        ThreadPoolExecutor(max_workers=16) as pool,
    ):
        first = list(pool.map(lambda c: _register(http, *c), customers))
        again = list(pool.map(lambda c: _register(http, *c), customers))
    assert [a.status_code for a in first] == [201] * len(customers), [
        a.text for a in first if a.status_code != 201
    ]
    assert [a.json()["id"] for a in again] == [a.json()["id"] for a in first]
    counts = {external_id: count for external_id, (count, _) in _registrations(container).items()}
    assert counts == {external_id: 1 for external_id, _ in customers}
