"""Time travel: answers `known_at=T` are those the ledger gave at T, even after backdated
corrections recorded later; without it, the answers reflect the corrections."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi.testclient import TestClient

from infra.bootstrap import Container
from tests.conftest import bearer
from tests.integration.test_metrics_api import QUOTA_PLAN, Finance, _open_invoice, _usage


def _answers(finance: Finance, headers: dict[str, str], customer: str, **extra: Any) -> dict[str, Any]:
    def get(path: str, **params: Any) -> Any:
        response = finance.client.get(path, params={**params, **extra}, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    return {
        "mrr": get("/v1/metrics/mrr", **{"from": "2025-01-01", "to": "2025-03-31", "currency": "EUR"}),
        "churn": get("/v1/metrics/churn", **{"from": "2025-02-01", "to": "2025-04-01", "currency": "EUR"}),
        "receivables": get("/v1/receivables", as_of="2025-02-20", currency="EUR"),
        "quotas": get("/v1/usage/quotas", customer_id=customer),
    }


def _last_recorded_at(container: Container) -> datetime:
    with container.pool.connection() as conn:
        row: Any = conn.execute("SELECT max(recorded_at) AS t FROM ledger_events").fetchone()
        return row["t"]  # type: ignore[no-any-return]


def test_answers_known_at_t_ignore_backdated_corrections_recorded_after_t(
    client: TestClient, admin: dict[str, str], container: Container
) -> None:
    finance = Finance(client, admin)
    finance.plans(QUOTA_PLAN, {**QUOTA_PLAN, "code": "big", "amount": 9000, "quotas": {}})
    customer = finance.customer("acme")
    # Billed by hand: the receivables followed here are the hand-made invoice's.
    sub = finance.subscribe(customer, "metered", "2025-01-10T00:00:00Z", billed_by="external")
    _, raw = container.keys.mint(role="ingest", name="acme", customer_id=UUID(customer))
    ingest = bearer(raw)
    _usage(finance, ingest, "u1", 40, "2025-02-12T00:00:00Z")
    invoice = _open_invoice(finance, customer, 10000, "2025-02-01T10:00:00Z", "2025-02-10")
    _, audit_raw = container.keys.mint(role="audit", name="auditor")
    auditor = bearer(audit_raw)
    finance.get("/v1/plans")  # wait for the read models
    at_t = _answers(finance, auditor, customer, min_position=finance.position)
    t = _last_recorded_at(container)

    # Backdated corrections, recorded after T.
    finance.post(
        f"/v1/subscriptions/{sub}/change", {"plan_code": "big", "effective_at": "2025-02-15T00:00:00Z"}, 200
    )
    finance.post(f"/v1/invoices/{invoice}/void", {"effective_at": "2025-02-05T00:00:00Z"}, 200)
    _usage(finance, ingest, "u1-fix", 90, "2025-02-20T00:00:00Z", corrects="u1")
    finance.get("/v1/plans")

    known = _answers(finance, auditor, customer, known_at=t.isoformat())
    now = _answers(finance, auditor, customer, min_position=finance.position)

    assert known == at_t
    assert now["mrr"]["data"][-1]["mrr"] == 9000 != at_t["mrr"]["data"][-1]["mrr"]
    assert now["receivables"]["invoices"] == [] != at_t["receivables"]["invoices"]
    assert now["quotas"]["data"][0]["used"] == 90
    assert at_t["quotas"]["data"][0]["used"] == 40


def test_known_at_needs_the_audit_role(client: TestClient, reader: dict[str, str]) -> None:
    response = client.get(
        "/v1/metrics/mrr", params={"known_at": "2025-01-01T00:00:00Z", "currency": "EUR"}, headers=reader
    )
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")
