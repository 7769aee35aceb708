"""The README's analyst queries, run verbatim through POST /v1/analytics/query on a simulated
history, and SQL answers compared with the API's read models on the same data."""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from application.simulation import Simulation
from infra.bootstrap import CORE_PROJECTION, Container, bootstrap
from infra.settings import Settings
from projections.runner import head_position, wait_for_position
from tests.conftest import bearer
from tests.integration.ingest_helpers import event, post_batch, usage

README = Path(__file__).resolve().parents[2] / "README.md"
UNTIL = datetime(2025, 6, 1, tzinfo=UTC)
SEED = 11
USAGE_TIME = datetime(2025, 5, 10, 12, tzinfo=UTC)


def readme_queries() -> dict[str, str]:
    """The ```sql blocks of the README's Analytics section, by the bold title before each."""
    section = README.read_text().split("\n## Analytics\n", 1)[1].split("\n## ", 1)[0]
    found = re.findall(r"^\*\*([^*\n]+)\*\*[^`]*?```sql\n(.*?)```", section, flags=re.S | re.M)
    return {title: sql for title, sql in found}


@dataclass
class History:
    client: TestClient
    reader: dict[str, str]
    container: Container
    position: int
    first_customer: str  # external ids of the two customers that reported usage
    second_customer: str

    def sql(self, query: str, **body: Any) -> dict[str, Any]:
        response = self.client.post(
            "/v1/analytics/query",
            json={"sql": query, **body},
            params={"min_position": self.position},
            headers=self.reader,
        )
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def records(self, query: str) -> list[dict[str, Any]]:
        answer = self.sql(query)
        names = [c["name"] for c in answer["columns"]]
        return [dict(zip(names, row, strict=True)) for row in answer["rows"]]

    def api_list(self, path: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = {**params, "limit": 500, "min_position": self.position}
            if cursor:
                query["cursor"] = cursor
            page = self.client.get(path, params=query, headers=self.reader).json()
            items += page["data"]
            cursor = page["next_cursor"]
            if not cursor:
                return items


@pytest.fixture(scope="module")
def history(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    """A simulated history (15 customers, 12 months) with usage reported by two customers, one
    measurement corrected; read models projected up to the last write."""
    settings = Settings(
        database_url=database_url,
        database_schema=f"t_{uuid.uuid4().hex[:12]}",
        data_dir=tmp_path_factory.mktemp("analytics"),
        database_pool_size=4,
        projection_poll_seconds=0.02,
        _env_file=None,  # type: ignore[call-arg]
    )
    container = bootstrap(settings, database_url, run_projection=True)
    simulation = Simulation(container.ledger, customers=15, months=12, seed=SEED, until=UNTIL)
    simulation.run()
    with container.pool.connection() as conn:
        registered: Any = conn.execute(
            "SELECT payload->>'external_id' AS external_id FROM events "
            "WHERE type = 'Customer.Registered' ORDER BY position LIMIT 2"
        ).fetchall()
    first, second = (row["external_id"] for row in registered)
    with TestClient(create_app(lambda: container), raise_server_exceptions=False) as client:
        _, ingest_key = container.keys.mint(role="ingest", name="tests")
        _, read_key = container.keys.mint(role="read", name="tests")
        measurements = [
            usage("u-1", 100, subject=first, time=USAGE_TIME),
            usage("u-2", 50, subject=first, time=USAGE_TIME),
            usage("u-3", 7, subject=second, time=USAGE_TIME),
            event("u-4", data={"metric": "seats", "value": "2.5"}, subject=second, time=USAGE_TIME),
        ]
        answer = post_batch(client, bearer(ingest_key), measurements)
        assert answer.status_code == 202, answer.text
        correction = event("c-1", "usage.corrected", {"corrects": "u-2", "value": 30}, subject=first)
        answer = post_batch(client, bearer(ingest_key), [correction])
        assert answer.status_code == 202, answer.text
        position = head_position(container.pool)
        assert wait_for_position(container.pool, CORE_PROJECTION, position, 60)
        yield History(client, bearer(read_key), container, position, first, second)
    container.close()


def test_the_readme_shows_five_analyst_queries() -> None:
    assert list(readme_queries()) == [
        "MRR by plan",
        "Monthly cohort retention",
        "Usage by metric and customer",
        "Days sales outstanding",
        "Failed payment recovery rate",
    ]


@pytest.mark.parametrize("title", list(readme_queries()))
def test_each_readme_query_runs_as_written_and_answers_rows(history: History, title: str) -> None:
    answer = history.sql(readme_queries()[title])
    assert answer["row_count"] > 0
    assert not answer["truncated"]


def test_mrr_by_plan_adds_up_to_the_mrr_the_api_reports_for_customers(history: History) -> None:
    by_plan = history.records(readme_queries()["MRR by plan"])
    sql_mrr: dict[str, int] = defaultdict(int)
    for row in by_plan:
        sql_mrr[row["currency"]] += row["mrr"]
    api_mrr: dict[str, int] = defaultdict(int)
    for customer in history.api_list("/v1/customers"):
        api_mrr[customer["currency"]] += customer["mrr"]
    assert dict(sql_mrr) == {currency: mrr for currency, mrr in api_mrr.items() if mrr}
    assert sum(sql_mrr.values()) > 0


def test_each_customers_mrr_from_subscriptions_matches_the_api(history: History) -> None:
    rows = history.records(
        "SELECT c.id, coalesce(sum(s.mrr) FILTER (s.status IN ('active', 'past_due')), 0) AS mrr "
        "FROM customers c LEFT JOIN subscriptions s ON s.customer_id = c.id GROUP BY c.id"
    )
    api = {c["id"]: c["mrr"] for c in history.api_list("/v1/customers")}
    assert {row["id"]: row["mrr"] for row in rows} == api
    some = next(iter(api))
    assert history.client.get(f"/v1/customers/{some}", headers=history.reader).json()["mrr"] == api[some]


def test_customer_count_matches_the_api(history: History) -> None:
    [row] = history.sql("SELECT count(*) FROM customers")["rows"]
    assert row == [len(history.api_list("/v1/customers"))] == [15]


def test_unpaid_invoices_add_up_to_what_the_api_lists(history: History) -> None:
    [[unpaid]] = history.sql(
        "SELECT coalesce(sum(amount_remaining), 0) FROM invoices "
        "WHERE status = 'open' AND amount_remaining > 0"
    )["rows"]
    listed = history.api_list("/v1/invoices", status="open")
    assert unpaid == sum(i["amount_remaining"] for i in listed if i["amount_remaining"] > 0)
    dso = history.records(readme_queries()["Days sales outstanding"])
    assert sum(row["receivable"] for row in dso) == int(unpaid)


def test_failed_payment_recovery_counts_the_payments_the_api_shows_failing(history: History) -> None:
    rows = history.records(readme_queries()["Failed payment recovery rate"])
    payments = history.api_list("/v1/payments")
    # A payment that failed either still is failed or was retried (attempt > 1).
    failed = [p for p in payments if p["status"] == "failed" or p["attempt"] > 1]
    recovered = [p for p in failed if p["status"] in ("succeeded", "refunded")]
    assert sum(row["failed_payments"] for row in rows) == len(failed) > 0
    assert sum(row["recovered"] for row in rows) == len(recovered)
    for row in rows:
        assert 0 <= float(row["recovery_rate"]) <= 1


def test_cohorts_hold_every_customer_that_ever_paid(history: History) -> None:
    rows = history.records(readme_queries()["Monthly cohort retention"])
    paid = {
        s["customer_id"]
        for s in history.api_list("/v1/subscriptions")
        if s["ended_at"] is None or s["ended_at"] > (s["trial_end"] or s["started_at"])
    }
    assert sum(row["customers"] for row in rows) == len(paid)
    assert all(row["m0"] is None or 0 <= float(row["m0"]) <= 100 for row in rows)


def test_usage_by_metric_and_customer_applies_corrections(history: History) -> None:
    rows = history.records(readme_queries()["Usage by metric and customer"])
    totals = {(r["external_id"], r["metric"], r["month"]): (r["records"], r["total"]) for r in rows}
    assert totals == {
        # u-2 (50) was corrected to 30
        (history.first_customer, "api_calls", "2025-05"): (2, "130.000000000000"),
        (history.second_customer, "api_calls", "2025-05"): (1, "7.000000000000"),
        (history.second_customer, "seats", "2025-05"): (1, "2.500000000000"),
    }


def test_events_view_holds_every_stored_event_with_its_envelope(history: History) -> None:
    with psycopg.connect(
        history.container.address.conninfo(),
        options=f"-c search_path={history.container.settings.database_schema}",
    ) as conn:
        stored = conn.execute(
            "SELECT count(*), max(position), count(DISTINCT stream_id), count(customer_id) FROM events"
        ).fetchone()
        last = conn.execute(
            "SELECT position, stream_id::text, type, source, actor, payload->>'value' FROM events "
            "WHERE type = 'UsageRecord.Corrected'"
        ).fetchone()
    [copied] = history.sql(
        "SELECT count(*), max(position), count(DISTINCT stream_id), count(customer_id) FROM events"
    )["rows"]
    assert tuple(copied) == stored
    [corrected] = history.sql(
        "SELECT position, stream_id, type, source, actor, payload->>'value' FROM events "
        "WHERE type = 'UsageRecord.Corrected'"
    )["rows"]
    assert tuple(corrected) == last
