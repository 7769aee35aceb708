"""Response schemas of the metrics, receivables and usage queries (SPEC sections 4 and 5).
Amounts are integers in minor units with the currency beside them; rates are decimals."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, Field, PlainSerializer

# Rates travel as JSON numbers (0.125), computed exactly and rounded only for the wire.
Rate = Annotated[Decimal, PlainSerializer(lambda v: float(round(v, 10)), return_type=float)]


class MrrDay(BaseModel):
    date: date
    currency: str
    mrr: int
    new: int
    expansion: int
    contraction: int
    churn: int
    reactivation: int


class MrrSeries(BaseModel):
    currency: str
    data: list[MrrDay]


class MovementOut(BaseModel):
    customer_id: UUID
    customer_name: str | None = None
    kind: str
    amount: int
    mrr_before: int
    mrr_after: int


class MovementsOut(BaseModel):
    date: date
    currency: str
    totals: dict[str, int] = Field(description="sum of each movement kind that day")
    data: list[MovementOut]
    next_cursor: str | None


class ChurnOut(BaseModel):
    from_: date = Field(alias="from", serialization_alias="from")
    to: date
    currency: str
    customers_at_start: int
    churned_customers: int
    customer_churn_rate: Rate
    mrr_at_start: int
    churned_mrr: int
    contraction_mrr: int
    expansion_mrr: int
    reactivation_mrr: int
    gross_mrr_churn_rate: Rate
    net_mrr_churn_rate: Rate


class CurrencyMrr(BaseModel):
    currency: str
    mrr: int = Field(description="MRR at the end of today, minor units")
    first_day: date | None = Field(description="the first day with an MRR movement; null if none")


class CurrenciesOut(BaseModel):
    data: list[CurrencyMrr] = Field(description="the largest MRR first")


class SummaryOut(BaseModel):
    currency: str
    mrr: int
    active_subscriptions: int
    failed_payments: int
    customer_churn_rate_30d: Rate
    unpaid_total: int
    currencies: list[str] = Field(description="every currency the ledger has figures in")


class ReceivableInvoice(BaseModel):
    invoice_id: UUID
    customer_id: UUID
    currency: str
    amount_remaining: int
    due_date: date
    days_overdue: int
    bucket: str


class ReceivablesOut(BaseModel):
    as_of: date
    currency: str | None
    totals: dict[str, int] | None = Field(description="amount per aging bucket in `currency`")
    totals_by_currency: dict[str, dict[str, int]]
    invoices: list[ReceivableInvoice]
    next_cursor: str | None


GROUP_DESCRIPTION = (
    'the value of the usage property the quota groups by (`group_by`); "" for usage without it, and'
    " for a quota that does not group"
)


class QuotaOut(BaseModel):
    customer_id: UUID
    metric: str
    group: str = Field(description=GROUP_DESCRIPTION)
    group_by: str | None = Field(description="the usage property the quota counts per value of, if any")
    period_start: datetime
    period_end: datetime
    used: int | float
    limit: int | float | None
    percent: float | None = Field(description="used / limit (0.8 is 80%)")
    state: str = Field(description="ok, warning (>= 80%), critical (>= 95%) or exceeded (>= 100%)")
    aggregation: str
    enforcement: str


class EntitlementOut(BaseModel):
    customer_id: UUID
    metric: str
    group: str = Field(description=GROUP_DESCRIPTION)
    allowed: bool
    used: int | float
    limit: int | float | None
    remaining: int | float | None
    enforcement: str
