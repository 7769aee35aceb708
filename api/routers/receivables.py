"""Receivables as of a date, with aging buckets (SPEC section 4)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.deps import KnownAtConn, Today
from api.responses import json_response
from api.routers.metrics import CurrencyQuery
from api.routing import LedgerRoute
from api.schemas.common import QueryDay
from api.schemas.metrics import ReceivablesOut
from projections import metric_queries as mq

router = APIRouter(route_class=LedgerRoute, prefix="/v1/receivables", tags=["receivables"])


@router.get("", response_model=ReceivablesOut)
def get_receivables(
    conn: KnownAtConn,
    today: Today,
    as_of: Annotated[
        QueryDay | None, Query(description="end of this UTC day, by business time; default today")
    ] = None,
    currency: CurrencyQuery = None,
    customer_id: UUID | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    return json_response(mq.receivables(conn, as_of or today, currency, customer_id, cursor, limit))
