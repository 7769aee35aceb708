"""RFC 9457 problem+json for every error: bad input is 4xx and changes nothing."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from application.ledger import ConcurrentChange
from domain.errors import (
    AlreadyExists,
    DomainError,
    IdempotencyKeyReused,
    InvalidTransition,
    NotFound,
    TestClockDisabled,
    TimeOutOfRange,
)

PROBLEM_TYPE_BASE = "https://ledger.dev/problems/"
PROBLEM_JSON = "application/problem+json"


class ApiProblem(Exception):
    """Raised by the API layer itself (auth, read-your-writes timeouts...)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        code: str,
        headers: dict[str, str] | None = None,
        errors: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.code = code
        self.headers = headers or {}
        self.errors = errors


def problem(
    status: int,
    title: str,
    detail: str,
    code: str,
    *,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _status_of(error: DomainError) -> tuple[int, str]:
    if isinstance(error, NotFound):
        # A missing resource in the path is 404; a reference in the body that points nowhere is 422.
        return (422, "Unknown reference") if error.field else (404, "Not found")
    if isinstance(error, AlreadyExists):
        return 409, "Conflict"
    if isinstance(error, InvalidTransition):
        return 409, "Not allowed in the current state"
    if isinstance(error, TestClockDisabled):
        return 403, "Test clock disabled"
    if isinstance(error, TimeOutOfRange):
        return 422, "Time out of range"
    if isinstance(error, IdempotencyKeyReused):
        return 422, "Idempotency key reused"
    return 422, "Invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation_failed(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return problem(400, "Malformed JSON", "the request body is not valid JSON", "malformed_json")
        fields = [{"field": _field(tuple(e.get("loc", ()))), "message": str(e.get("msg"))} for e in errors]
        return problem(
            422,
            "Invalid request",
            "the request does not match the schema",
            "validation_error",
            errors=fields,
        )

    @app.exception_handler(DomainError)
    async def domain_refused(request: Request, exc: DomainError) -> JSONResponse:
        status, title = _status_of(exc)
        errors = [{"field": exc.field, "message": exc.message}] if exc.field else None
        return problem(status, title, exc.message, exc.code, errors=errors)

    @app.exception_handler(ConcurrentChange)
    async def concurrent_change(request: Request, exc: ConcurrentChange) -> JSONResponse:
        return problem(
            409, "Concurrent change", "the resource kept changing; retry the request", "concurrent_change"
        )

    @app.exception_handler(ApiProblem)
    async def api_problem(request: Request, exc: ApiProblem) -> JSONResponse:
        return problem(exc.status, exc.title, exc.detail, exc.code, errors=exc.errors, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {
            404: "Not found",
            405: "Method not allowed",
            413: "Payload too large",
            415: "Unsupported media type",
        }
        title = titles.get(exc.status_code, "HTTP error")
        return problem(
            exc.status_code,
            title,
            str(exc.detail),
            title.lower().replace(" ", "_"),
            headers=getattr(exc, "headers", None),
        )
