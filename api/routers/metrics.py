"""MRR, its movements, churn and the summary (SPEC section 4): finance's numbers."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.deps import KnownAtConn, ReadConn, Today
from api.errors import ApiProblem
from api.responses import json_response
from api.routing import LedgerRoute
from api.schemas.common import Currency, QueryDay
from api.schemas.metrics import ChurnOut, CurrenciesOut, MovementsOut, MrrSeries, SummaryOut
from projections import metric_queries as mq

router = APIRouter(route_class=LedgerRoute, prefix="/v1/metrics", tags=["metrics"])

CurrencyQuery = Annotated[Currency | None, Query(description="ISO 4217 code")]
FromQuery = Annotated[QueryDay | None, Query(alias="from", description="first day (UTC)")]


def pick_currency(conn: Any, currency: str | None) -> str:
    """The asked currency, or the only one the ledger has; several need choosing."""
    if currency is not None:
        return currency
    known = mq.currencies(conn)
    if len(known) == 1:
        return known[0]
    detail = (
        f"this ledger has figures in {', '.join(known)}: say which with ?currency="
        if known
        else "the ledger has no figures yet: say which currency with ?currency="
    )
    raise ApiProblem(
        422,
        "Invalid request",
        detail,
        code="validation_error",
        errors=[{"field": "currency", "message": "is required"}],
    )


@router.get("/currencies", response_model=CurrenciesOut)
def get_currencies(conn: ReadConn, today: Today) -> dict[str, Any]:
    """The currencies the ledger has figures in, with today's MRR of each, the largest first."""
    return {"data": mq.currencies_by_mrr(conn, today)}


@router.get("/summary", response_model=SummaryOut)
def get_summary(conn: ReadConn, today: Today, currency: CurrencyQuery = None) -> dict[str, Any]:
    chosen = pick_currency(conn, currency)
    return {**mq.summary(conn, chosen, today), "currencies": mq.currencies(conn)}


@router.get("/mrr", response_model=MrrSeries)
def get_mrr(
    conn: KnownAtConn,
    today: Today,
    first: FromQuery = None,
    to: Annotated[QueryDay | None, Query(description="last day, inclusive (UTC); default today")] = None,
    currency: CurrencyQuery = None,
) -> Response:
    """Daily rows: MRR at the end of each day and that day's movements."""
    last = to or today
    chosen = pick_currency(conn, currency)
    rows = mq.mrr_series(conn, chosen, first or last - timedelta(days=29), last)
    # Plain rows straight to JSON: a year of days is the hot path of the dashboard, and the
    # rows are built here with exactly the schema's fields.
    return json_response({"currency": chosen, "data": rows})


@router.get("/mrr/movements", response_model=MovementsOut)
def get_mrr_movements(
    conn: KnownAtConn,
    day: Annotated[QueryDay, Query(alias="date", description="the UTC day")],
    currency: CurrencyQuery = None,
    kind: Annotated[str | None, Query(pattern="^(new|expansion|contraction|churn|reactivation)$")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    """The customers and amounts behind each movement of a day."""
    chosen = pick_currency(conn, currency)
    page = mq.mrr_movements(conn, chosen, day, kind, cursor, limit)
    return {
        "date": day,
        "currency": chosen,
        "totals": page.totals,
        "data": page.items,
        "next_cursor": page.next_cursor,
    }


@router.get("/churn", response_model=ChurnOut, response_model_by_alias=True)
def get_churn(
    conn: KnownAtConn,
    today: Today,
    first: FromQuery = None,
    to: Annotated[QueryDay | None, Query(description="window end, exclusive (UTC); default tomorrow")] = None,
    currency: CurrencyQuery = None,
) -> dict[str, Any]:
    """Churn over [from, to): default the last 30 days including today."""
    end = to or today + timedelta(days=1)
    chosen = pick_currency(conn, currency)
    return mq.churn(conn, chosen, first or end - timedelta(days=30), end)
