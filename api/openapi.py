"""The OpenAPI document, completed from what each operation really does: the bearer scheme on
every operation that needs a key, and every status the operation can answer (SPEC section 5),
each error with the problem+json schema.

The statuses follow from what the operation takes and answers, so a new endpoint is documented
by being written:
- a key (the bearer scheme, or an Authorization header read by hand): 401, 403;
- any parameter or body: 422 (`errors` name the fields); a path parameter: 404;
- a body: 400 (not JSON, bad Idempotency-Key), 413 (over LEDGER_MAX_BODY_BYTES), 415 (not JSON);
- a command (it answers the written resource's `id` and `position`): 409 (the state refuses it,
  it exists with other attributes, or it kept changing) and the Idempotency-Key header;
- any operation touching the store: 503 (`min_position` not reached in time, or the store did
  not answer). An operation may declare more (or its own content) in its decorator."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

BEARER = "bearerAuth"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "a URI naming the kind of problem"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "one entry per wrong field (validation)",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}
DESCRIPTIONS = {
    400: "Malformed: the body is not JSON, or a header (Idempotency-Key) is invalid",
    401: "No key, or an unknown or revoked one (Authorization: Bearer <key>)",
    403: "The key's role may not do this",
    404: "No such resource",
    406: "Accept names no format this operation answers",
    409: "The resource's state refuses the command, it exists with other attributes, or it kept changing",
    413: "The body is larger than the limit (LEDGER_MAX_BODY_BYTES)",
    415: "The body is not JSON: send Content-Type: application/json",
    422: "Invalid: `errors` names each field (also an unknown reference, a business rule, min_position "
    "beyond the log's head)",
    503: "Not available: the read models have not reached min_position in time, or the store did not "
    "answer; retry after Retry-After",
}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "the same key with the same request records once and answers as the first time",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
NO_STORE = {"/healthz"}
BODY_METHODS = {"POST", "PUT", "PATCH"}


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        servers=app.servers,
    )
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    components["securitySchemes"] = {
        BEARER: {"type": "http", "scheme": "bearer", "description": "an API key minted by an admin"}
    }
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            _complete(path, method.upper(), operation, schemas)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return schema


def _is_authorization(parameter: dict[str, Any]) -> bool:
    return bool(parameter["in"] == "header" and parameter["name"].lower() == "authorization")


def _writes(operation: dict[str, Any], schemas: dict[str, Any]) -> bool:
    """A command: it answers the written resource's `id` and the `position` of its last event."""
    for code, response in operation.get("responses", {}).items():
        if not code.startswith("2"):
            continue
        for content in response.get("content", {}).values():
            target = content.get("schema", {})
            ref = target.get("$ref", "")
            resolved = schemas.get(ref.rsplit("/", 1)[-1], {}) if ref else target
            if {"id", "position"} <= set(resolved.get("required", ())):
                return True
    return False


def _complete(path: str, method: str, operation: dict[str, Any], schemas: dict[str, Any]) -> None:
    parameters: list[dict[str, Any]] = operation.pop("parameters", [])
    secured = "security" in operation or any(_is_authorization(p) for p in parameters)
    # The key is the security scheme's, not a parameter of its own.
    parameters = [p for p in parameters if not _is_authorization(p)]
    has_body = method in BODY_METHODS

    statuses: set[int] = set()
    if secured:
        statuses |= {401, 403}
        operation["security"] = [{BEARER: []}]
    if parameters or has_body:
        statuses.add(422)
    if any(p["in"] == "path" for p in parameters):
        statuses.add(404)
    if has_body:
        statuses |= {400, 413, 415, 422}
    if secured and has_body and _writes(operation, schemas):
        statuses |= {409, 503}
        parameters.append(IDEMPOTENCY_KEY)
    if path not in NO_STORE:  # the store may not answer; min_position may not be reached in time
        statuses.add(503)
    if parameters:
        operation["parameters"] = parameters

    responses: dict[str, Any] = operation.setdefault("responses", {})
    for status in sorted(statuses):
        response = responses.setdefault(str(status), {"description": DESCRIPTIONS[status]})
        if "HTTPValidationError" in str(response.get("content", "")):
            response["content"] = {}
    for code, response in responses.items():
        if code.startswith(("4", "5")) and not response.get("content"):
            response["content"] = {"application/problem+json": {"schema": PROBLEM_REF}}
