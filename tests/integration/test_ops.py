"""Operators see how far each projector is behind, in JSON and as Prometheus gauges."""

from __future__ import annotations

from fastapi.testclient import TestClient

PLAN = {"code": "pro", "name": "Pro", "currency": "EUR", "amount": 2000, "interval": "month"}


def test_ops_reports_each_projector_caught_up_after_a_read_your_write(
    client: TestClient, admin: dict[str, str]
) -> None:
    written = client.post("/v1/plans", json=PLAN, headers=admin).json()
    client.get("/v1/plans", params={"min_position": written["position"]}, headers=admin)
    status = client.get("/v1/ops/projections", headers=admin).json()
    core = next(p for p in status["projectors"] if p["name"] == "core")
    assert status["head"] == written["position"]
    assert core["position"] == written["position"]
    assert core["lag_events"] == 0


def test_metrics_expose_projection_lag_for_prometheus(client: TestClient, admin: dict[str, str]) -> None:
    written = client.post("/v1/plans", json=PLAN, headers=admin).json()
    client.get("/v1/plans", params={"min_position": written["position"]}, headers=admin)
    text = client.get("/metrics").text
    assert f"ledger_event_store_head_position {float(written['position'])}" in text
    assert 'ledger_projection_lag_events{projector="core"} 0.0' in text


def test_readiness_reports_the_store_and_projectors(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["store"] == "ok"
    assert client.get("/healthz").json() == {"status": "ok"}
