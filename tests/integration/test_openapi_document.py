"""The OpenAPI document tells a client everything the door does (SPEC section 5): the bearer
scheme on each operation that needs a key, every status an operation can answer with the problem
schema, currencies as an ISO 4217 enum; and /docs works without the internet."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from domain.money import CURRENCY_EXPONENTS

PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, ops in document["paths"].items() for m, op in ops.items()]


def test_the_bearer_scheme_is_declared_and_applied_per_operation(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "an API key minted by an admin",
    }
    unsecured = {"/healthz", "/readyz", "/v1/webhooks/stripe"}
    for method, path, operation in _operations(document):
        if path in unsecured:
            assert "security" not in operation, (method, path)
            continue
        assert operation["security"] == [{"bearerAuth": []}], (method, path)
        assert {"401", "403"} <= operation["responses"].keys(), (method, path)
        headers = [p["name"].lower() for p in operation.get("parameters", []) if p["in"] == "header"]
        assert "authorization" not in headers, (method, path)


def test_every_error_status_is_documented_with_the_problem_schema(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    problem = document["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    for method, path, operation in _operations(document):
        responses = operation["responses"]
        for status, response in responses.items():
            if status.startswith(("4", "5")) and path != "/readyz":
                assert response["content"] == PROBLEM, (method, path, status)
        if method in ("POST", "PATCH"):
            assert {"400", "413", "415", "422"} <= responses.keys(), (method, path)
        if re.search(r"\{\w+\}", path):
            assert "404" in responses, (method, path)
        if any(p["name"] == "min_position" for p in operation.get("parameters", [])):
            assert {"422", "503"} <= responses.keys(), (method, path)
    commands = {p for m, p, op in _operations(document) if "409" in op["responses"]}
    assert {"/v1/plans", "/v1/plans/{code}/revise", "/v1/payments/{payment_id}/succeed"} <= commands


def test_currencies_are_an_iso_4217_enum(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    plan = document["components"]["schemas"]["PlanDefine"]["properties"]["currency"]
    assert set(plan["enum"]) == set(CURRENCY_EXPONENTS)
    assert {"EUR", "JPY", "KWD"} <= set(plan["enum"])
    mrr = next(op for m, p, op in _operations(document) if p == "/v1/metrics/mrr")
    currency = next(p for p in mrr["parameters"] if p["name"] == "currency")
    assert "EUR" in str(currency["schema"])


def test_docs_are_served_from_the_installed_package_without_a_cdn(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    sources = re.findall(r"""(?:src|href)=["']([^"']+)""", page.text)
    sources += re.findall(r"""url: ?['"]([^'"]+)""", page.text)
    assert sources, page.text
    assert all(s.startswith("/") for s in sources), sources  # nothing from another host
    for asset in ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"):
        served = client.get(asset)
        assert served.status_code == 200, asset
        assert len(served.content) > 10_000, asset
    assert client.get("/redoc").status_code == 404  # ReDoc would need a CDN: not offered
