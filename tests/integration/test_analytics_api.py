"""POST /v1/analytics/query: the sandbox refuses what is not a read, answers in three formats,
and sees new writes through `min_position` (the copy is refreshed incrementally)."""

from __future__ import annotations

import io
import time
from datetime import date
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from infra.bootstrap import Container
from infra.settings import Settings
from tests.conftest import bearer

QUERY = "/v1/analytics/query"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Tight limits, so the time limit is tested in about a second."""
    return settings.model_copy(
        update={
            "analytics_timeout_seconds": 1.0,
            "analytics_max_rows": 50,
            "analytics_max_staleness_seconds": 0,
        }
    )


def register(client: TestClient, admin: dict[str, str], external_id: str) -> int:
    response = client.post(
        "/v1/customers",
        json={"external_id": external_id, "email": f"{external_id}@example.com", "currency": "EUR"},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    position: int = response.json()["position"]
    return position


def ask(client: TestClient, key: dict[str, str], sql: str, **kwargs: Any) -> Any:
    params = kwargs.pop("params", None)
    headers = {**key, **kwargs.pop("headers", {})}
    return client.post(QUERY, json={"sql": sql, **kwargs}, headers=headers, params=params)


@pytest.mark.parametrize(
    ("sql", "refused"),
    [
        ("SELECT * FROM read_csv('/etc/passwd')", "file, network and extension access is disabled"),
        ("SELECT * FROM read_text('/etc/hostname')", "file, network and extension access is disabled"),
        (
            "SELECT * FROM 'https://example.com/data.parquet'",
            "file, network and extension access is disabled",
        ),
        ("COPY (SELECT 1) TO '/tmp/analytics-leak.csv'", "COPY statements are not allowed"),
        ("ATTACH '/tmp/other.duckdb' AS other", "ATTACH statements are not allowed"),
        ("INSTALL httpfs", "INSTALL statements are not allowed"),
        ("LOAD httpfs", "LOAD statements are not allowed"),
        ("SET enable_external_access = true", "SET statements are not allowed"),
        ("PRAGMA version", "PRAGMA statements are not allowed"),
        ("CREATE TABLE scratch AS SELECT 1", "CREATE statements are not allowed"),
        ("DROP VIEW customers", "DROP statements are not allowed"),
        ("SELECT 1; SELECT 2", "send exactly one statement"),
    ],
)
def test_what_is_not_a_single_read_is_refused_with_a_clear_problem(
    client: TestClient, reader: dict[str, str], sql: str, refused: str
) -> None:
    response = ask(client, reader, sql)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"].endswith("/statement_not_allowed")
    assert refused in problem["detail"]


def test_read_csv_of_a_local_file_is_refused(client: TestClient, reader: dict[str, str]) -> None:
    response = ask(client, reader, "SELECT * FROM read_csv('/etc/passwd')")
    assert response.status_code == 422
    assert "root" not in response.text


def test_python_objects_of_the_server_are_not_reachable_by_name(
    client: TestClient, reader: dict[str, str]
) -> None:
    response = ask(client, reader, "SELECT * FROM container")  # a name in the API's own frames
    assert response.status_code == 400
    assert response.json()["type"].endswith("/invalid_query")


def test_sql_that_does_not_parse_or_names_nothing_known_is_400(
    client: TestClient, reader: dict[str, str]
) -> None:
    for sql in ("SELEC 1", "SELECT nope FROM customers", "SELECT * FROM no_such_view", "   "):
        response = ask(client, reader, sql)
        assert response.status_code in (400, 422), response.text
        assert response.headers["content-type"] == "application/problem+json"
    assert ask(client, reader, "SELECT * FROM no_such_view").json()["type"].endswith("/invalid_query")


def test_a_slow_query_is_stopped_by_the_time_limit(client: TestClient, reader: dict[str, str]) -> None:
    started = time.monotonic()
    response = ask(client, reader, "SELECT count(*) FROM range(1000000000000) t(i) WHERE hash(i) % 7 = 3")
    assert response.status_code == 422, response.text
    assert response.json()["type"].endswith("/query_timeout")
    assert "longer than 1 s" in response.json()["detail"]
    assert time.monotonic() - started < 10
    # The engine answers the next query normally.
    assert ask(client, reader, "SELECT 42 AS answer").json()["rows"] == [[42]]


def test_answers_hold_at_most_the_row_limit_and_say_when_they_were_cut(
    client: TestClient, reader: dict[str, str]
) -> None:
    answer = ask(client, reader, "SELECT i FROM range(1000) t(i) ORDER BY i").json()
    assert answer["row_count"] == 50 and answer["truncated"] is True
    assert answer["rows"][:2] == [[0], [1]]
    answer = ask(client, reader, "SELECT i FROM range(1000) t(i) ORDER BY i", limit=5).json()
    assert answer["rows"] == [[0], [1], [2], [3], [4]] and answer["truncated"] is True
    answer = ask(client, reader, "SELECT i FROM range(3) t(i)", limit=5).json()
    assert answer["row_count"] == 3 and answer["truncated"] is False
    too_many = ask(client, reader, "SELECT 1", limit=51)
    assert too_many.status_code == 422
    assert too_many.json()["errors"][0]["field"] == "limit"


def test_analytics_needs_a_read_key(client: TestClient, container: Container) -> None:
    assert client.post(QUERY, json={"sql": "SELECT 1"}).status_code == 401
    _, ingest = container.keys.mint(role="ingest", name="tests")
    assert ask(client, bearer(ingest), "SELECT 1").status_code == 403


def test_answers_come_as_json_csv_or_parquet_by_accept(
    client: TestClient, admin: dict[str, str], reader: dict[str, str]
) -> None:
    position = register(client, admin, "acme")
    sql = "SELECT external_id, currency, 1.50::DECIMAL(4, 2) AS price, created_at FROM customers"
    params = {"min_position": position}

    answer = ask(client, reader, sql, params=params).json()
    assert [c["name"] for c in answer["columns"]] == ["external_id", "currency", "price", "created_at"]
    assert answer["columns"][3]["type"] == "TIMESTAMP WITH TIME ZONE"
    [[external_id, currency, price, created_at]] = answer["rows"]
    assert (external_id, currency, price) == ("acme", "EUR", "1.50")
    assert created_at.endswith("+00:00")
    assert answer["position"] >= position

    csv = ask(client, reader, sql, params=params, headers={"Accept": "text/csv"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    header, row = csv.text.strip().split("\n")
    assert header == "external_id,currency,price,created_at"
    assert row.startswith("acme,EUR,1.50,")

    parquet = ask(client, reader, sql, params=params, headers={"Accept": "application/vnd.apache.parquet"})
    assert parquet.status_code == 200
    table = pq.read_table(io.BytesIO(parquet.content))
    assert table.column_names == ["external_id", "currency", "price", "created_at"]
    assert table.to_pylist()[0]["external_id"] == "acme"

    assert ask(client, reader, sql, headers={"Accept": "application/xml"}).status_code == 406


def test_a_write_is_visible_to_analytics_with_min_position(
    client: TestClient, admin: dict[str, str], reader: dict[str, str], container: Container
) -> None:
    sql = "SELECT (SELECT count(*) FROM customers) AS customers, (SELECT count(*) FROM events) AS events"
    first = register(client, admin, "first")
    answer = ask(client, reader, sql, params={"min_position": first}).json()
    assert answer["rows"] == [[1, _stored_events(container)]]

    # The copy is refreshed incrementally: the next answer holds the new events too.
    second = register(client, admin, "second")
    answer = ask(client, reader, sql, params={"min_position": second}).json()
    assert answer["rows"] == [[2, _stored_events(container)]]
    assert answer["position"] >= second
    ids = ask(client, reader, "SELECT position FROM events ORDER BY position").json()["rows"]
    assert len(ids) == len({row[0] for row in ids})  # no event copied twice


def _connect(container: Container) -> psycopg.Connection[Any]:
    return psycopg.connect(
        container.address.conninfo(), options=f"-c search_path={container.settings.database_schema}"
    )


def _stored_events(container: Container) -> int:
    with _connect(container) as conn:
        row = conn.execute("SELECT count(*) FROM ledger_events").fetchone()
        assert row is not None
        return int(row[0])


def test_mrr_of_a_day_in_sql_equals_the_mrr_api_and_its_movements(
    client: TestClient, admin: dict[str, str], reader: dict[str, str]
) -> None:
    from tests.integration.test_metrics_api import MONTHLY, SMALL, YEARLY, Finance

    finance = Finance(client, admin)
    finance.plans(MONTHLY, SMALL, YEARLY)
    a, b = finance.customer("a"), finance.customer("b")
    sub = finance.subscribe(a, "starter", "2025-01-10T09:00:00Z", quantity=2)
    finance.subscribe(b, "pro-year", "2025-01-15T09:00:00Z")
    finance.post(
        f"/v1/subscriptions/{sub}/change", {"plan_code": "pro", "effective_at": "2025-01-20T09:00:00Z"}, 200
    )
    finance.post(
        f"/v1/subscriptions/{sub}/cancel",
        {"at_period_end": False, "effective_at": "2025-01-25T09:00:00Z"},
        200,
    )
    api = finance.series("2025-01-09", "2025-01-31")

    answer = ask(
        client,
        reader,
        "SELECT date, mrr, new, expansion, contraction, churn, reactivation FROM mrr_daily"
        " WHERE currency = 'EUR' AND date BETWEEN '2025-01-09' AND '2025-01-31' ORDER BY date",
        params={"min_position": finance.position},
    ).json()
    # One row per day from the first movement (January 10), quiet days included, as the API answers.
    assert [date.fromisoformat(r[0]) for r in answer["rows"]] == [d for d in sorted(api) if d.day >= 10]
    for day, mrr, *moved in answer["rows"]:
        row = api[date.fromisoformat(day)]
        assert [mrr, *moved] == [
            row[k] for k in ("mrr", "new", "expansion", "contraction", "churn", "reactivation")
        ]
    churned = ask(
        client, reader, "SELECT customer_id, kind, amount FROM mrr_movements WHERE kind = 'churn'"
    ).json()
    drill = finance.get("/v1/metrics/mrr/movements", date="2025-01-25", currency="EUR")
    assert churned["rows"] == [[m["customer_id"], m["kind"], m["amount"]] for m in drill["data"]]
