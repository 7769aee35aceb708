from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from api.schemas.common import Request


class AnalyticsQuery(Request):
    sql: str = Field(
        min_length=1,
        max_length=100_000,
        description="one read-only SELECT over the analytics views (events, customers, subscriptions, "
        "invoices, payments, usage, alerts, plans, mrr_daily, mrr_movements)",
    )
    limit: int | None = Field(
        default=None,
        ge=1,
        description="rows to answer at most (default and ceiling: LEDGER_ANALYTICS_MAX_ROWS)",
    )


class AnalyticsColumn(BaseModel):
    name: str
    type: str = Field(description="DuckDB type name")


class AnalyticsAnswer(BaseModel):
    columns: list[AnalyticsColumn]
    rows: list[list[Any]] = Field(
        description="one array per row; DECIMAL values and integers beyond 64 bits are strings"
    )
    row_count: int
    truncated: bool = Field(description="true when the query had more rows than the limit")
    position: int = Field(description="every event up to this log position was in the data queried")
