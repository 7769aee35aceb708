"""The double-entry journal and its trial balance, as an auditor reads them after finance's
commands: every entry balances, each line points at the event it books, replay rebuilds it."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from infra.bootstrap import CORE_PROJECTION, Container
from projections.journal import JOURNAL_TABLES
from projections.registry import projector, tables_of
from projections.replay import replay
from projections.runner import wait_for_position
from tests.conftest import bearer, read_model_rows


@pytest.fixture
def auditor(container: Container) -> dict[str, str]:
    _, raw = container.keys.mint(role="audit", name="auditor")
    return bearer(raw)


def _post(client: TestClient, admin: dict[str, str], path: str, body: dict[str, Any]) -> Any:
    response = client.post(path, json=body, headers=admin)
    assert response.status_code in (200, 201), response.text
    return response.json()


def _invoice(
    client: TestClient, admin: dict[str, str], customer: str, amount: int, day: str, discount: int = 0
) -> Any:
    draft = _post(
        client,
        admin,
        "/v1/invoices",
        {
            "customer_id": customer,
            "currency": "EUR",
            "discount": discount,
            "lines": [{"description": "Pro", "quantity": 1, "unit_amount": amount}],
            "effective_at": f"{day}T09:00:00Z",
        },
    )
    return _post(
        client,
        admin,
        f"/v1/invoices/{draft['id']}/finalize",
        {"due_date": "2025-04-30", "effective_at": f"{day}T10:00:00Z"},
    )


def _payment(
    client: TestClient,
    admin: dict[str, str],
    customer: str,
    amount: int,
    day: str,
    invoice: str | None = None,
) -> Any:
    payment = _post(
        client,
        admin,
        "/v1/payments",
        {
            "customer_id": customer,
            "invoice_id": invoice,
            "amount": amount,
            "currency": "EUR",
            "effective_at": f"{day}T11:00:00Z",
        },
    )
    return _post(client, admin, f"/v1/payments/{payment['id']}/succeed", {"effective_at": f"{day}T12:00:00Z"})


@pytest.fixture
def month_of_billing(client: TestClient, admin: dict[str, str]) -> int:
    """March 2025 of one customer taxed at 20%; answers the position of the last write."""
    customer = _post(
        client,
        admin,
        "/v1/customers",
        {"external_id": "acme", "email": "a@acme.io", "currency": "EUR", "tax_rate_bps": 2000},
    )["id"]
    a = _invoice(client, admin, customer, 10_000, "2025-03-01", discount=1_000)  # total 10,800
    b = _invoice(client, admin, customer, 5_000, "2025-03-02")  # total 6,000
    applied = _payment(client, admin, customer, 4_000, "2025-03-05", invoice=a["id"])
    unapplied = _payment(client, admin, customer, 2_500, "2025-03-06")
    _post(client, admin, f"/v1/invoices/{b['id']}/void", {"effective_at": "2025-03-10T00:00:00Z"})
    _post(
        client, admin, f"/v1/invoices/{a['id']}/mark-uncollectible", {"effective_at": "2025-03-20T00:00:00Z"}
    )
    _post(
        client,
        admin,
        f"/v1/payments/{unapplied['id']}/refund",
        {"amount": 1_000, "effective_at": "2025-03-25T00:00:00Z"},
    )
    last = _post(
        client,
        admin,
        f"/v1/payments/{applied['id']}/refund",
        {"amount": 500, "effective_at": "2025-03-26T00:00:00Z"},
    )
    return int(last["position"])


def _balances(client: TestClient, auditor: dict[str, str], as_of: str, position: int) -> Any:
    response = client.get(
        "/v1/ledger/trial-balance",
        params={"as_of": as_of, "currency": "EUR", "min_position": position},
        headers=auditor,
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_trial_balance_books_invoices_payments_voids_write_offs_and_refunds(
    client: TestClient, auditor: dict[str, str], month_of_billing: int
) -> None:
    body = _balances(client, auditor, "2025-03-31", month_of_billing)

    balances = {a["account"]: (a["debit"], a["credit"], a["balance"]) for a in body["accounts"]}
    assert balances == {
        "accounts_receivable": (16_800, 16_800, 0),
        "revenue": (5_000, 14_000, -9_000),
        "tax_payable": (1_000, 2_800, -1_800),
        "cash": (6_500, 1_500, 5_000),
        "customer_credit": (5_000, 6_500, -1_500),
        "bad_debt": (6_800, 0, 6_800),
        "refunds": (500, 0, 500),
    }
    assert body["totals"] == [{"currency": "EUR", "debit": 41_600, "credit": 41_600, "balanced": True}]


def test_trial_balance_as_of_a_day_counts_only_what_occurred_by_its_end(
    client: TestClient, auditor: dict[str, str], month_of_billing: int
) -> None:
    body = _balances(client, auditor, "2025-03-05", month_of_billing)

    balances = {a["account"]: a["balance"] for a in body["accounts"]}
    assert balances["accounts_receivable"] == 6_800 + 6_000  # what remains on both invoices
    assert balances["cash"] == 4_000
    assert "bad_debt" not in balances
    assert body["totals"][0]["balanced"] is True
    assert _balances(client, auditor, "2025-02-28", month_of_billing)["accounts"] == []


def test_every_journal_line_points_at_the_event_it_books(container: Container, month_of_billing: int) -> None:
    assert wait_for_position(container.pool, CORE_PROJECTION, month_of_billing, 5)
    with container.pool.connection() as conn:
        orphans: Any = conn.execute(
            "SELECT count(*) AS n FROM journal_lines j LEFT JOIN ledger_events e"
            " ON e.notification_id = j.position AND e.originator_id = j.stream_id"
            " AND e.originator_version = j.version AND e.event_type = j.event_type"
            " AND e.occurred_at = j.occurred_at WHERE e.notification_id IS NULL"
        ).fetchone()
        unbalanced: Any = conn.execute(
            "SELECT count(*) AS n FROM (SELECT position FROM journal_lines GROUP BY position, currency"
            " HAVING sum(debit) <> sum(credit)) x"
        ).fetchone()
        booked: Any = conn.execute("SELECT count(DISTINCT position) AS n FROM journal_lines").fetchone()
    assert orphans["n"] == 0
    assert unbalanced["n"] == 0
    assert booked["n"] == 9  # 2 finalized, 2 succeeded, 1 applied, 1 void, 1 write-off, 2 refunds


def test_trial_balance_needs_an_audit_key_and_a_real_day(
    client: TestClient, reader: dict[str, str], auditor: dict[str, str]
) -> None:
    assert client.get("/v1/ledger/trial-balance", headers=reader).status_code == 403
    bad = client.get("/v1/ledger/trial-balance", params={"as_of": "2025-02-30"}, headers=auditor)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "as_of"
    assert (
        client.get("/v1/ledger/trial-balance", params={"currency": "eur"}, headers=auditor).status_code == 422
    )


def test_replay_rebuilds_the_same_journal(container: Container, month_of_billing: int) -> None:
    assert wait_for_position(container.pool, CORE_PROJECTION, month_of_billing, 5)
    live = read_model_rows_of_journal(container)
    replay(
        container.address.conninfo(),
        container.settings.database_schema,
        CORE_PROJECTION,
        apply=projector(CORE_PROJECTION),
        tables=tables_of(CORE_PROJECTION),
    )
    assert read_model_rows_of_journal(container) == live


def read_model_rows_of_journal(container: Container) -> dict[str, list[Any]]:
    rows = read_model_rows(container, ("journal_invoices", "journal_payments"))
    with container.pool.connection() as conn:
        rows["journal_lines"] = conn.execute("SELECT * FROM journal_lines ORDER BY position, line").fetchall()
    assert set(rows) == set(JOURNAL_TABLES)
    return rows
