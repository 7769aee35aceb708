"""RFC 9457 problem+json for every error: bad input is 4xx and changes nothing."""

from __future__ import annotations

import logging
from typing import Any

from eventsourcing.persistence import DataError as PersistenceDataError
from eventsourcing.persistence import OperationalError as PersistenceOperationalError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg import DataError as PsycopgDataError
from psycopg import OperationalError as PsycopgOperationalError
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

logger = logging.getLogger(__name__)


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


def _not_json(request: Request) -> bool:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return not (media == "application/json" or (media.startswith("application/") and media.endswith("+json")))


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _status_of(error: DomainError) -> tuple[int, str, str]:
    """Status, title and problem type: the type always agrees with the status."""
    status, title = _status_and_title(error)
    if isinstance(error, NotFound) and error.field:
        # A reference in the body (plan_code, customer_id...) that points nowhere: the request
        # is wrong, not the URL, so 422 `unknown_reference`; `not_found` is only ever a 404.
        return status, title, "unknown_reference"
    return status, title, error.code


def _status_and_title(error: DomainError) -> tuple[int, str]:
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
        if _not_json(request) and any(
            tuple(e.get("loc", ())) == ("body",) and e.get("type") != "missing" for e in errors
        ):
            # FastAPI hands a body of another media type over as bytes, which no model accepts.
            return problem(
                415,
                "Unsupported media type",
                "the body must be JSON: send Content-Type: application/json",
                "unsupported_media_type",
                errors=[{"field": "Content-Type", "message": "application/json"}],
            )
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
        status, title, code = _status_of(exc)
        errors = [{"field": exc.field, "message": exc.message}] if exc.field else None
        return problem(status, title, exc.message, code, errors=errors)

    @app.exception_handler(ConcurrentChange)
    async def concurrent_change(request: Request, exc: ConcurrentChange) -> JSONResponse:
        return problem(
            409, "Concurrent change", "the resource kept changing; retry the request", "concurrent_change"
        )

    @app.exception_handler(ApiProblem)
    async def api_problem(request: Request, exc: ApiProblem) -> JSONResponse:
        return problem(exc.status, exc.title, exc.detail, exc.code, errors=exc.errors, headers=exc.headers)

    from api.body_limit import BodyTooLarge, too_large

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return too_large(exc.limit)

    @app.exception_handler(PsycopgOperationalError)
    @app.exception_handler(PersistenceOperationalError)
    async def store_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # The database did not answer in time (a lock wait, a lost connection): the request
        # changed nothing and may be sent again.
        logger.warning("store unavailable for %s %s: %s", request.method, request.url.path, exc)
        return problem(
            503,
            "Store unavailable",
            "the event store did not answer in time; retry the request (with its Idempotency-Key)",
            "store_unavailable",
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(PsycopgDataError)
    @app.exception_handler(PersistenceDataError)
    async def value_the_store_cannot_hold(request: Request, exc: Exception) -> JSONResponse:
        # SQLSTATE class 22 (a NUL character in a query parameter, a number out of range):
        # the statement failed, so nothing was recorded.
        return problem(
            422,
            "Invalid request",
            "a value in the request cannot be stored or compared (NUL character, number out of range)",
            "invalid_value",
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette logs the exception and re-raises it after this answer: a bug, not bad input,
        # but the client still gets problem+json rather than plain text.
        return problem(500, "Internal error", "the ledger failed to answer this request", "internal")

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
