"""Request and response bodies of the command and read endpoints (SPEC section 5)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, EmailStr, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from api.schemas.common import (
    Command,
    Currency,
    MinorUnits,
    Moment,
    PositiveMinorUnits,
    Quantity,
    Request,
    Written,
)
from domain.money import MAX_AMOUNT


# ---------------------------------------------------------------- api keys
class ApiKeyCreate(Request):
    role: Literal["admin", "ingest", "read", "audit"]
    name: str = Field(min_length=1, max_length=200)
    customer_id: UUID | None = None


class ApiKeyCreated(BaseModel):
    id: UUID
    key: str = Field(description="the bearer token; shown once, stored only as a hash")
    role: str
    name: str
    customer_id: UUID | None


class ApiKeyIdentity(BaseModel):
    key_id: str
    role: str
    customer_id: UUID | None
    permissions: list[str] = Field(description="what this key may do: admin, audit, read, ingest")


# ---------------------------------------------------------------- plans
PLAN_CODE_PATTERN = r"^[A-Za-z0-9_.:-]+$"


class Quota(Request):
    limit: float = Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False, description="a usage quantity")
    aggregation: Literal["sum", "max", "last"] = "sum"
    enforcement: Literal["soft", "hard"] = "soft"
    group_by: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description=(
            "a usage property (e.g. `project`): usage, thresholds, alerts and entitlements are then per"
            " value of it, each group against the whole limit. Usage without that property (or with a"
            ' value that is not a string, number or boolean) counts under the group "" (empty string)'
        ),
    )


class PriceTier(Request):
    up_to: Quantity | None = None
    unit_amount: MinorUnits = 0
    flat_amount: MinorUnits = 0


class UsagePrice(Request):
    model: Literal["per_unit", "graduated", "volume", "package"]
    unit_amount: MinorUnits = 0
    tiers: list[PriceTier] | None = None
    package_size: Quantity | None = None
    package_amount: MinorUnits = 0


class PlanTerms(Command):
    """What a plan charges; a revision replaces all of it."""

    name: str = Field(min_length=1, max_length=200)
    currency: Currency
    amount: MinorUnits
    interval: Literal["month", "year"]
    interval_count: int = Field(default=1, ge=1, le=36)
    trial_days: int = Field(default=0, ge=0, le=730)
    quotas: dict[str, Quota] = Field(default_factory=dict)
    usage_prices: dict[str, UsagePrice] = Field(default_factory=dict)


class PlanDefine(PlanTerms):
    code: str = Field(min_length=1, max_length=100, pattern=PLAN_CODE_PATTERN)


class PlanRevise(PlanTerms):
    pass


class PlanOut(BaseModel):
    id: UUID
    code: str
    name: str
    currency: str
    amount: int
    interval: str
    interval_count: int
    trial_days: int
    quotas: dict[str, Any]
    usage_prices: dict[str, Any]
    status: Literal["active", "retired"]
    version: int


class PlanWritten(PlanOut, Written):
    pass


# ---------------------------------------------------------------- customers
class CustomerRegister(Command):
    external_id: str = Field(min_length=1, max_length=200)
    email: EmailStr
    name: str = Field(default="", max_length=200)
    currency: Currency
    tax_rate_bps: int = Field(default=0, ge=0, le=10_000)
    metadata: dict[str, Any] = Field(default_factory=dict)


class CustomerUpdate(Command):
    email: EmailStr | None = None
    name: str | None = Field(default=None, max_length=200)
    tax_rate_bps: int | None = Field(default=None, ge=0, le=10_000)
    metadata: dict[str, Any] | None = None


class CustomerOut(BaseModel):
    id: UUID
    external_id: str
    email: str
    name: str
    currency: str
    tax_rate_bps: int
    metadata: dict[str, Any]
    archived: bool
    created_at: datetime


class CustomerWritten(CustomerOut, Written):
    pass


class CustomerView(CustomerOut):
    status: Literal["active", "at_risk", "churned"]
    mrr: int = Field(description="monthly recurring revenue in minor units of `currency`")
    lifetime_value: int = Field(description="succeeded payments minus refunds, minor units")


# ---------------------------------------------------------------- subscriptions
class SubscriptionStart(Command):
    customer_id: UUID
    plan_code: str = Field(min_length=1)
    quantity: Quantity = 1
    trial_days: int | None = Field(default=None, ge=0, le=730)


class SubscriptionChange(Command):
    plan_code: str | None = Field(default=None, min_length=1)
    quantity: Quantity | None = None


class SubscriptionCancel(Command):
    at_period_end: bool


class SubscriptionRenew(Command):
    pass


class SubscriptionOut(BaseModel):
    id: UUID
    customer_id: UUID
    plan_code: str
    quantity: int
    status: Literal["trialing", "active", "past_due", "canceled"]
    amount: int
    currency: str
    interval: str
    interval_count: int
    current_period_start: datetime
    current_period_end: datetime
    trial_end: datetime | None
    cancel_at_period_end: bool
    cancel_at: datetime | None = Field(description="when a scheduled cancellation takes effect")
    canceled_at: datetime | None
    ended_at: datetime | None
    started_at: datetime


class SubscriptionWritten(SubscriptionOut, Written):
    pass


class SubscriptionView(SubscriptionOut):
    mrr: int = Field(description="monthly contribution while active or past_due, minor units")
    customer_name: str | None = Field(default=None, description="in lists: the customer's name")


# ---------------------------------------------------------------- invoices
class InvoiceLineIn(Request):
    description: str = Field(min_length=1, max_length=500)
    quantity: Quantity
    unit_amount: MinorUnits
    period_start: Moment | None = None
    period_end: Moment | None = None

    @model_validator(mode="after")
    def amount_is_recordable(self) -> InvoiceLineIn:
        # quantity × unit_amount is computed by the ledger: refused here, before it is attempted.
        if self.quantity * self.unit_amount > MAX_AMOUNT:
            raise PydanticCustomError(
                "amount_too_large",
                "quantity × unit_amount passes the largest amount, {max}",
                {"max": MAX_AMOUNT},
            )
        return self


class InvoiceDraft(Command):
    customer_id: UUID
    currency: Currency
    subscription_id: UUID | None = None
    lines: list[InvoiceLineIn] = Field(min_length=1, max_length=1000)
    discount: MinorUnits = 0

    @field_validator("lines")
    @classmethod
    def subtotal_is_recordable(cls, lines: list[InvoiceLineIn]) -> list[InvoiceLineIn]:
        if sum(line.quantity * line.unit_amount for line in lines) > MAX_AMOUNT:
            raise PydanticCustomError(
                "amount_too_large",
                "the lines add up to more than the largest amount, {max}",
                {"max": MAX_AMOUNT},
            )
        return lines


class InvoiceFinalize(Command):
    due_date: date


class InvoiceTransition(Command):
    pass


class InvoiceLineOut(BaseModel):
    description: str
    quantity: int
    unit_amount: int
    amount: int
    period_start: datetime | None
    period_end: datetime | None


class InvoiceOut(BaseModel):
    id: UUID
    customer_id: UUID
    subscription_id: UUID | None
    number: str | None
    status: Literal["draft", "open", "paid", "void", "uncollectible"]
    currency: str
    lines: list[InvoiceLineOut]
    subtotal: int
    discount: int
    tax: int
    total: int
    amount_paid: int
    amount_remaining: int
    due_date: date | None
    created_at: datetime
    finalized_at: datetime | None
    customer_name: str | None = Field(default=None, description="in lists: the customer's name")


class InvoiceWritten(InvoiceOut, Written):
    pass


# ---------------------------------------------------------------- payments
class PaymentCreate(Command):
    customer_id: UUID
    invoice_id: UUID | None = None
    amount: PositiveMinorUnits
    currency: Currency
    provider_reference: str | None = Field(default=None, max_length=200)


class PaymentSucceed(Command):
    pass


class PaymentFail(Command):
    failure_code: str | None = Field(default=None, max_length=100)
    failure_message: str | None = Field(default=None, max_length=1000)


class PaymentRetry(Command):
    pass


class PaymentRefund(Command):
    amount: PositiveMinorUnits


class PaymentOut(BaseModel):
    id: UUID
    customer_id: UUID
    invoice_id: UUID | None
    amount: int
    currency: str
    status: Literal["pending", "succeeded", "failed", "refunded"]
    attempt: int
    failure_code: str | None
    failure_message: str | None
    amount_refunded: int
    provider_reference: str | None
    created_at: datetime
    customer_name: str | None = Field(default=None, description="in lists: the customer's name")


class PaymentWritten(PaymentOut, Written):
    pass


# ---------------------------------------------------------------- alerts
class AlertResolve(Command):
    note: str = Field(min_length=1, max_length=2000)


class AlertOut(BaseModel):
    id: UUID
    type: str
    severity: Literal["low", "medium", "high", "critical"]
    status: Literal["open", "resolved"]
    customer_id: UUID | None
    subject: str
    message: str
    raised_at: datetime
    resolved_at: datetime | None
    note: str | None = None
    customer_name: str | None = Field(default=None, description="in lists: the customer's name")


class AlertWritten(AlertOut, Written):
    pass
