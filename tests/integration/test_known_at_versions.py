"""`known_at` from versioned read models equals `known_at` from a full replay, for random
backdated histories (subscriptions changed and canceled in the past, customers written after
others whose days they change, invoices paid, voided and renamed customers, corrections recorded
after what they correct) and random moments: exactly at an event's recording, just before it,
before the first and after the last.

The oracle is the replay snapshot (projections/snapshots.py): the projection code run over only
the events recorded by T. Every query of projections/metric_queries.py that a versioned
`known_at` endpoint runs is compared, on the same arguments, and one endpoint is read through
the API too (the wiring)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.app import create_app
from infra import recorded_positions
from infra.bootstrap import Container, bootstrap
from infra.settings import Settings
from projections import known_at as known
from projections import metric_queries as mq
from projections.snapshots import known_at_snapshot, reading_snapshot
from tests.conftest import bearer
from tests.integration.test_backdated_histories import Api, customers, iso, play

invoices = st.lists(
    st.tuples(
        st.integers(0, 2),  # which customer
        st.integers(1000, 30000),  # amount
        st.integers(5, 400),  # finalized this many days ago
        st.integers(0, 45),  # due this many days after
        st.sampled_from(["none", "pay_part", "pay_full", "void", "pay_then_void"]),
        st.integers(0, 60),  # the settling step this many days after finalizing
    ),
    max_size=4,
)
renames = st.lists(st.integers(0, 2), max_size=2)
moments = st.lists(st.tuples(st.integers(0, 10**6), st.booleans()), min_size=2, max_size=3)


def tolerant_post(api: Api, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """A write the ledger may refuse (4xx changes nothing): its answer, or None."""
    response = api.client.post(path, json=body, headers=api.admin)
    if response.status_code >= 500:
        raise AssertionError(response.text)
    if response.status_code >= 400:
        return None
    answer: dict[str, Any] = response.json()
    api.position = max(api.position, answer.get("position", 0))
    return answer


def bill(api: Api, now: datetime, customer_ids: list[str], history: list[Any]) -> None:
    for who, amount, days_ago, due_in, action, later in history:
        customer = customer_ids[who % len(customer_ids)]
        at = now - timedelta(days=days_ago, hours=3)
        invoice = tolerant_post(
            api,
            "/v1/invoices",
            {
                "customer_id": customer,
                "currency": "EUR",
                "lines": [{"description": "service", "quantity": 1, "unit_amount": amount}],
                "effective_at": iso(at),
            },
        )
        if invoice is None:
            continue
        due = (at + timedelta(days=due_in)).date().isoformat()
        if (
            tolerant_post(
                api, f"/v1/invoices/{invoice['id']}/finalize", {"due_date": due, "effective_at": iso(at)}
            )
            is None
        ):
            continue
        settle_at = min(at + timedelta(days=later), now - timedelta(minutes=5))
        if action in ("pay_part", "pay_full", "pay_then_void"):
            paid = amount if action == "pay_full" else amount // 3
            payment = tolerant_post(
                api,
                "/v1/payments",
                {"customer_id": customer, "invoice_id": invoice["id"], "amount": paid, "currency": "EUR",
                 "effective_at": iso(settle_at)},
            )  # fmt: skip
            if payment is not None:
                tolerant_post(api, f"/v1/payments/{payment['id']}/succeed", {"effective_at": iso(settle_at)})
        if action in ("void", "pay_then_void"):
            # Recorded after the payment, effective before it when `later` is large: a backdated correction.
            void_at = at + timedelta(days=later // 2, hours=1)
            tolerant_post(
                api, f"/v1/invoices/{invoice['id']}/void", {"effective_at": iso(min(void_at, settle_at))}
            )


def recorded_moments(container: Container) -> list[datetime]:
    with container.pool.connection() as conn:
        rows = conn.execute("SELECT recorded_at FROM ledger_events ORDER BY notification_id").fetchall()
    return [r["recorded_at"] for r in rows]


def answers(conn: Any, days: list[date]) -> dict[str, Any]:
    """Every query a versioned known_at endpoint runs, on fixed arguments."""
    found: dict[str, Any] = {"currencies": mq.currencies(conn)}
    first, last = days[0], days[-1]
    found["mrr"] = mq.mrr_series(conn, "EUR", first, last)
    found["churn"] = [mq.churn(conn, "EUR", a, b) for a, b in ((first, last), (days[1], days[2]))]
    found["movements"] = [
        mq.mrr_movements(conn, "EUR", day, kind, None, 1000) for day in days for kind in (None, "new")
    ]
    found["receivables"] = [mq.receivables(conn, day, None, None, None, 1000) for day in days]
    found["receivables_eur_paged"] = mq.receivables(conn, days[2], "EUR", None, None, 1)
    return found


@pytest.fixture
def fresh(database_url: str, settings: Settings) -> Iterator[Any]:
    """A fresh ledger (schema of its own) per example; the example closes it."""

    def make() -> Container:
        schema = f"t_{uuid.uuid4().hex[:12]}"
        return bootstrap(settings.model_copy(update={"database_schema": schema}), database_url)

    yield make


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(customers, invoices, renames, moments)
def test_known_at_from_versions_equals_known_at_from_a_full_replay(
    fresh: Any, history: list[Any], billing: list[Any], renamed: list[int], picks: list[tuple[int, bool]]
) -> None:
    container: Container = fresh()
    try:
        check(container, history, billing, renamed, picks)
    finally:
        container.close()


def check(
    container: Container,
    history: list[Any],
    billing: list[Any],
    renamed: list[int],
    picks: list[tuple[int, bool]],
) -> None:
    schema = container.settings.database_schema
    with TestClient(create_app(lambda: container), raise_server_exceptions=False) as client:
        _, raw = container.keys.mint(role="admin", name="tests")
        api = Api(client, bearer(raw))
        _, audit_raw = container.keys.mint(role="audit", name="auditor")
        auditor = bearer(audit_raw)
        now = container.ledger.now()
        model = play(api, now, history)
        ids = [c.id for c in model]
        bill(api, now, ids, billing)
        for n, who in enumerate(renamed):
            renamed_answer = client.patch(
                f"/v1/customers/{ids[who % len(ids)]}", json={"name": f"renamed {n}"}, headers=api.admin
            )
            assert renamed_answer.status_code == 200, renamed_answer.text
            api.position = max(api.position, renamed_answer.json()["position"])
        # A last backdated change recorded after everything: the past as now known moves again.
        tolerant_post(
            api,
            "/v1/customers",
            {"external_id": f"late-{uuid.uuid4().hex[:6]}", "email": "l@example.com", "currency": "EUR",
             "name": "late", "effective_at": "2024-01-01T00:00:00Z"},
        )  # fmt: skip
        api.get("/v1/plans")  # caught up
        recorded = recorded_moments(container)
        start = min(s.start for c in model for s in c.subscriptions).date()
        days = [start - timedelta(days=1), start + timedelta(days=20), start + timedelta(days=75), now.date()]
        days.sort()
        conninfo = container.address.conninfo()
        asked = [recorded[0] - timedelta(seconds=1), recorded[-1] + timedelta(seconds=1)]
        for index, just_before in picks:
            moment = recorded[index % len(recorded)]
            asked.append(moment - timedelta(microseconds=1) if just_before else moment)
        for moment in asked:
            with container.pool.connection() as conn:
                position = known.position_at(conn, schema, moment)
                assert position is not None and known.versions_complete(conn)
                known.ensure_views(conn, schema)
                with known.reading_known(conn, schema, position):
                    fast = answers(conn, days)
            snapshot = known_at_snapshot(conninfo, schema, moment)
            with container.pool.connection() as conn, reading_snapshot(conn, snapshot, schema):
                replayed = answers(conn, days)
            assert fast == replayed, moment
            # Through the API as well (the endpoint's wiring).
            response = client.get(
                "/v1/metrics/mrr",
                params={"from": days[0].isoformat(), "to": days[-1].isoformat(), "currency": "EUR",
                        "known_at": moment.isoformat()},
                headers=auditor,
            )  # fmt: skip
            assert response.status_code == 200, response.text
            assert response.json()["data"] == [{**r, "date": r["date"].isoformat()} for r in replayed["mrr"]]


def test_when_recorded_at_goes_back_known_at_answers_from_a_full_replay(
    client: TestClient, admin: dict[str, str], container: Container
) -> None:
    api = Api(client, admin)
    api.post("/v1/plans", {"code": "basic", "name": "basic", "currency": "EUR", "amount": 1000,
                           "interval": "month", "interval_count": 1})  # fmt: skip
    customer = api.post("/v1/customers", {"external_id": "a", "email": "a@example.com", "currency": "EUR"})[
        "id"
    ]
    api.post("/v1/subscriptions", {"customer_id": customer, "plan_code": "basic", "quantity": 1})
    _, audit_raw = container.keys.mint(role="audit", name="auditor")
    auditor = bearer(audit_raw)
    schema = container.settings.database_schema
    moment = recorded_moments(container)[-1]
    params = {"currency": "EUR", "known_at": moment.isoformat()}
    before = client.get("/v1/metrics/mrr", params=params, headers=auditor)
    assert before.status_code == 200, before.text
    # An event whose recorded_at is earlier than the one before it: as if the clock stepped back.
    with container.pool.connection() as conn:
        conn.execute(
            "INSERT INTO ledger_events (originator_id, originator_version, topic, state, event_type,"
            " occurred_at, recorded_at) VALUES (%s, 1, 'tests:Nothing', '{}', 'Tests.Nothing', %s, %s)",
            (uuid.uuid4(), moment, moment - timedelta(days=1)),
        )
    with container.pool.connection() as conn:
        assert known.position_at(conn, schema, moment) is None
    after = client.get("/v1/metrics/mrr", params=params, headers=auditor)
    assert after.status_code == 200, after.text
    # Answered from a replay snapshot: the event recorded "a day earlier" counts (it changes no figure).
    snapshots = [s for s in _schemas(container) if s.startswith(f"{schema}_known_")]
    assert snapshots, "no replay snapshot was made"
    assert after.json() == before.json()


def _schemas(container: Container) -> list[str]:
    with container.pool.connection() as conn:
        return [r["nspname"] for r in conn.execute("SELECT nspname FROM pg_namespace").fetchall()]


def test_a_new_process_goes_on_from_the_kept_walk_and_finds_the_same_positions(
    client: TestClient, admin: dict[str, str], container: Container
) -> None:
    api = Api(client, admin)
    for n in range(3):
        api.post("/v1/customers", {"external_id": f"c{n}", "email": "c@example.com", "currency": "EUR"})
    schema = container.settings.database_schema
    recorded = recorded_moments(container)
    asked = [
        recorded[0] - timedelta(seconds=1),
        *recorded,
        *(m - timedelta(microseconds=1) for m in recorded),
    ]
    with container.pool.connection() as conn:
        first = [recorded_positions.position_at(conn, schema, m) for m in asked]
    recorded_positions._WALKS.clear()  # as in a process started now
    api.post("/v1/customers", {"external_id": "late", "email": "c@example.com", "currency": "EUR"})
    with container.pool.connection() as conn:
        again = [recorded_positions.position_at(conn, schema, m) for m in asked]
        kept = conn.execute("SELECT count(*) AS n FROM known_at_walk").fetchone()
    scanned = [container.ledger.store.position_at(m) for m in asked]
    assert first == again == scanned
    assert kept is not None and kept["n"] > 0
