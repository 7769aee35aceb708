"""POST /v1/analytics/query: read-only DuckDB SQL over copies of the log and the read models.

The SQL never reaches PostgreSQL: each API process keeps one analytics engine (built on first
use), refreshed incrementally from the store (infra/analytics/engine.py). DuckDB and Arrow are
imported with the engine, so an API process that never answers analytics does not hold them."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response

from api.deps import ContainerDep, ReadKey, wait_for_read_models
from api.errors import ApiProblem
from api.routing import LedgerRoute
from api.schemas.analytics import AnalyticsAnswer, AnalyticsQuery
from infra.analytics.errors import (
    AnalyticsError,
    InvalidQuery,
    QueryTimedOut,
    QueryTooLarge,
    StatementRefused,
)

if TYPE_CHECKING:
    from infra.analytics.engine import AnalyticsEngine, Answer

router = APIRouter(route_class=LedgerRoute, prefix="/v1/analytics", tags=["analytics"])

CSV = "text/csv"
PARQUET = "application/vnd.apache.parquet"
JSON = "application/json"
_engine_lock = threading.Lock()

STATUS = {StatementRefused: 422, InvalidQuery: 400, QueryTimedOut: 422, QueryTooLarge: 422}
TITLES = {
    StatementRefused: "Statement not allowed",
    InvalidQuery: "Invalid query",
    QueryTimedOut: "Query timed out",
    QueryTooLarge: "Query too large",
}


def analytics_engine(request: Request, container: ContainerDep) -> AnalyticsEngine:
    """This process's engine, built on first use (it copies nothing until a query asks)."""
    from infra.analytics.engine import AnalyticsEngine, analytics_temp_directory
    from infra.analytics.source import PostgresSource

    engine: AnalyticsEngine | None = getattr(request.app.state, "analytics_engine", None)
    if engine is None:
        with _engine_lock:
            engine = getattr(request.app.state, "analytics_engine", None)
            if engine is None:
                settings = container.settings
                engine = AnalyticsEngine(
                    PostgresSource(container.address.conninfo(), settings.database_schema),
                    max_staleness_seconds=settings.analytics_max_staleness_seconds,
                    memory_limit=settings.analytics_memory_limit,
                    temp_directory=analytics_temp_directory(settings.data_dir),
                )
                request.app.state.analytics_engine = engine
    return engine


def _media_type(accept: str | None) -> str:
    for part in (accept or JSON).split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in (CSV, PARQUET, JSON):
            return media
        if media in ("*/*", "application/*"):
            return JSON
    raise ApiProblem(406, "Not acceptable", f"answers are {JSON}, {CSV} or {PARQUET}", code="not_acceptable")


@router.post(
    "/query",
    response_model=AnalyticsAnswer,
    responses={
        200: {"content": {CSV: {}, PARQUET: {}}, "description": "JSON rows, or CSV / Parquet by Accept"},
        400: {"description": "SQL that does not parse or names unknown tables or columns"},
        406: {"description": "Accept names none of JSON, CSV or Parquet"},
        422: {"description": "not a single SELECT, file or network access, time limit exceeded"},
    },
)
def query(
    body: AnalyticsQuery,
    container: ContainerDep,
    engine: Annotated[Any, Depends(analytics_engine)],  # an AnalyticsEngine, imported on first use
    _: ReadKey,
    accept: Annotated[str | None, Header()] = None,
    min_position: Annotated[
        int | None, Query(ge=0, description="wait until this position is visible")
    ] = None,
) -> Response:
    """Run one read-only SELECT (DuckDB dialect) over the views `events`, `customers`,
    `subscriptions`, `invoices`, `payments`, `usage`, `alerts`, `plans`, `mrr_daily` and
    `mrr_movements`. Statements other than SELECT, and file, network or extension access, are
    refused; a query is stopped after LEDGER_ANALYTICS_TIMEOUT_SECONDS; at most `limit` rows
    are answered (`truncated` tells whether there were more)."""
    media_type = _media_type(accept)
    settings = container.settings
    limit = body.limit or settings.analytics_max_rows
    if limit > settings.analytics_max_rows:
        raise ApiProblem(
            422,
            "Invalid request",
            f"limit is at most {settings.analytics_max_rows}",
            code="validation_error",
            errors=[{"field": "limit", "message": f"at most {settings.analytics_max_rows}"}],
        )
    if min_position:
        wait_for_read_models(container, min_position)
    try:
        answer = engine.query(
            body.sql,
            limit=limit,
            timeout_seconds=settings.analytics_timeout_seconds,
            min_position=min_position,
        )
        return _respond(answer, media_type)
    except AnalyticsError as error:
        kind = type(error)
        raise ApiProblem(
            STATUS.get(kind, 400), TITLES.get(kind, "Invalid query"), error.message, code=error.code
        ) from None


def _respond(answer: Answer, media_type: str) -> Response:
    from infra.analytics import results

    headers = {
        "X-Ledger-Position": str(answer.position),
        "X-Row-Count": str(answer.result.table.num_rows),
        "X-Truncated": "true" if answer.result.truncated else "false",
    }
    if media_type == CSV:
        return Response(results.as_csv(answer.result), media_type=f"{CSV}; charset=utf-8", headers=headers)
    if media_type == PARQUET:
        return Response(results.as_parquet(answer.result), media_type=PARQUET, headers=headers)
    body: dict[str, Any] = {**results.as_json(answer.result), "position": answer.position}
    return JSONResponse(body, headers=headers)
