"""Request and response bodies of the command and read endpoints (SPEC section 5)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StrictInt, field_validator, model_validator
from pydantic_core import PydanticCustomError

from api.schemas.common import (
    Command,
    Currency,
    MinorUnits,
    Moment,
    PositiveMinorUnits,
    Quantity,
    Request,
    UnitAmount,
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
    up_to: Quantity | None = Field(
        default=None, description="the tier holds quantities up to and including this; null: no bound"
    )
    unit_amount: UnitAmount = "0"
    flat_amount: MinorUnits = 0


class UsagePrice(Request):
    """A metric's price (SPEC 7): per_unit {unit_amount}; graduated or volume {tiers}; package
    {package_size, package_amount, free_units?}."""

    model: Literal["per_unit", "graduated", "volume", "package"]
    unit_amount: UnitAmount = "0"
    tiers: list[PriceTier] | None = None
    package_size: Quantity | None = None
    package_amount: MinorUnits = 0
    free_units: StrictInt | None = Field(default=None, ge=0, le=10**9)


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
TaxExempt = Literal["none", "exempt", "reverse"]


class Address(Request):
    line1: str | None = Field(default=None, max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    postal_code: str | None = Field(default=None, max_length=40)
    city: str | None = Field(default=None, max_length=200)
    state: str | None = Field(default=None, max_length=200)
    country: str | None = Field(default=None, max_length=2, description="ISO 3166-1 alpha-2")


CollectionMethod = Literal["send_invoice", "charge_automatically"]


class CustomerRegister(Command):
    external_id: str = Field(min_length=1, max_length=200)
    email: EmailStr
    name: str = Field(default="", max_length=200)
    currency: Currency
    tax_rate_bps: int = Field(default=0, ge=0, le=10_000)
    metadata: dict[str, Any] = Field(default_factory=dict)
    tax_exempt: TaxExempt = Field(default="none", description="exempt and reverse charge pay no tax")
    vat_id: str | None = Field(default=None, max_length=50)
    address: Address | None = None
    net_terms_days: int = Field(default=30, ge=0, le=365, description="days from finalization to due")
    collection_method: CollectionMethod = Field(
        default="send_invoice",
        description="send_invoice: e-mailed, paid by its due date (reminders); charge_automatically:"
        " the ledger collects it through its payment backend at finalization (retries)",
    )


class CustomerUpdate(Command):
    email: EmailStr | None = None
    name: str | None = Field(default=None, max_length=200)
    tax_rate_bps: int | None = Field(default=None, ge=0, le=10_000)
    metadata: dict[str, Any] | None = None
    tax_exempt: TaxExempt | None = None
    vat_id: str | None = Field(default=None, max_length=50)
    address: Address | None = None
    net_terms_days: int | None = Field(default=None, ge=0, le=365)
    collection_method: CollectionMethod | None = None


class CustomerOut(BaseModel):
    id: UUID
    external_id: str
    email: str
    name: str
    currency: str
    tax_rate_bps: int
    tax_exempt: TaxExempt = "none"
    vat_id: str | None = None
    address: dict[str, Any] | None = None
    net_terms_days: int = 30
    collection_method: CollectionMethod = "send_invoice"
    discount: dict[str, Any] | None = Field(default=None, description="a coupon applied to all its invoices")
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
    billed_by: Literal["ledger", "external"] = Field(
        default="ledger",
        description="ledger: the ledger invoices it each period (SPEC 7); external: its invoices come"
        " from elsewhere (hand-made, or a provider), the ledger only records them",
    )


ProrationBehavior = Literal["create_prorations", "always_invoice", "none"]


class SubscriptionChange(Command):
    plan_code: str | None = Field(default=None, min_length=1)
    quantity: Quantity | None = None
    proration_behavior: ProrationBehavior = Field(
        default="create_prorations",
        description="create_prorations: proration lines join the next invoice;"
        " always_invoice: an invoice now; none: no proration",
    )


class SubscriptionItemAdd(Command):
    """An add-on (SPEC 10): a plan in the subscription's currency and billing interval, billed
    with the subscription on each period's invoice (amount × quantity) and counted in its MRR."""

    plan_code: str = Field(min_length=1)
    quantity: Quantity = 1
    proration_behavior: ProrationBehavior = Field(
        default="create_prorations",
        description="create_prorations: the rest of the period already billed is charged on the next"
        " invoice, by the second; always_invoice: on an invoice now; none: billed from the next period",
    )


class SubscriptionItemChange(Command):
    quantity: Quantity
    proration_behavior: ProrationBehavior = Field(
        default="create_prorations",
        description="create_prorations: proration lines join the next invoice;"
        " always_invoice: an invoice now; none: no proration",
    )


class SubscriptionItemOut(BaseModel):
    id: UUID
    plan_code: str
    name: str
    amount: int = Field(description="per period and unit, minor units (the add-on plan's when added)")
    currency: str
    interval: str
    interval_count: int
    quantity: int
    monthly_amount: int = Field(
        description="amount × quantity normalised to a month, rounded half-even once: what the item"
        " adds to the subscription's MRR while it is active or past_due"
    )
    added_at: datetime


class SubscriptionItemWritten(SubscriptionItemOut, Written):
    subscription_id: UUID
    removed_at: datetime | None = Field(default=None, description="set when the write removed the item")


class SubscriptionCancel(Command):
    at_period_end: bool
    proration_behavior: ProrationBehavior = Field(
        default="create_prorations",
        description="canceling now: credit the unused time on the final invoice, or not (none)",
    )


class DiscountApply(Command):
    coupon: str = Field(min_length=1, max_length=100)


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
    billed_by: Literal["ledger", "external"] = "ledger"
    discount: dict[str, Any] | None = Field(default=None, description="a coupon applied to its invoices")
    items: list[SubscriptionItemOut] = Field(
        default_factory=list, description="its add-on items, billed and counted in MRR beside the plan"
    )


class SubscriptionWritten(SubscriptionOut, Written):
    pass


class SubscriptionView(SubscriptionOut):
    mrr: int = Field(
        description="monthly contribution (plan and add-on items) while active or past_due, minor units"
    )
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
    line_id: UUID | None = None
    kind: Literal["fee", "usage", "proration", "adjustment", "manual"] = "manual"
    description: str
    quantity: int | str = Field(description="a whole number, or a decimal string for usage")
    unit_amount: int | str | None = Field(
        default=None, description="minor units; a decimal string where it is a rate; null on tiered usage"
    )
    amount: int
    period_start: datetime | None
    period_end: datetime | None
    metric: str | None = None
    source: dict[str, Any] = Field(
        default_factory=dict,
        description="lineage: a fee line its subscription and terms; a usage line `records`,"
        " `first_position`, `last_position` and `records_digest` (sha256 of the sorted record ids)",
    )


class DunningOut(BaseModel):
    state: Literal["retrying", "reminding", "exhausted", "stopped"]
    attempts: int = Field(description="payment attempts that failed")
    next_action_at: datetime | None = Field(description="when the next step falls due")
    steps_taken: int = Field(description="retries or reminders made, and the final action")
    final_action: Literal["cancel_subscription", "mark_uncollectible", "none"]


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
    amount_credited: int = 0
    balance_applied: int = Field(default=0, description="the customer's credit balance applied")
    amount_remaining: int
    due_date: date | None
    created_at: datetime
    finalized_at: datetime | None
    billing_reason: str = "manual"
    period_start: datetime | None = None
    period_end: datetime | None = None
    tax_rate_bps: int = 0
    tax_exempt: TaxExempt = "none"
    tax_note: str | None = Field(default=None, description='"Reverse charge" where it applies')
    coupon: dict[str, Any] | None = None
    collection_method: CollectionMethod | None = Field(
        default=None, description="how its money is collected (none: an invoice billed elsewhere)"
    )
    dunning: DunningOut | None = Field(default=None, description="what is done about it being unpaid")
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


class PaymentCallback(BaseModel):
    """What the payment backend posts to `/v1/payments/callback` (SPEC 8)."""

    model_config = ConfigDict(extra="ignore")

    event_id: str = Field(
        min_length=1, max_length=200, description="the callback's own id: sent twice, recorded once"
    )
    external_payment_id: str = Field(min_length=1, max_length=200)
    status: Literal["succeeded", "failed", "canceled"]
    amount: PositiveMinorUnits
    currency: Currency
    failure_code: str | None = Field(default=None, max_length=100)
    failure_message: str | None = Field(default=None, max_length=1000)


class PaymentOut(BaseModel):
    id: UUID
    customer_id: UUID
    invoice_id: UUID | None
    amount: int
    currency: str
    status: Literal["pending", "succeeded", "failed", "refunded", "canceled"]
    attempt: int
    failure_code: str | None
    failure_message: str | None
    amount_refunded: int
    provider_reference: str | None
    method: Literal["manual", "backend"] = Field(
        default="manual", description="backend: collected by the ledger through its payment backend"
    )
    external_payment_id: str | None = Field(default=None, description="the payment backend's id")
    payment_url: str | None = Field(
        default=None, description="where the customer can pay, if the backend says"
    )
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


# ---------------------------------------------------------------- coupons
class CouponDefine(Command):
    code: str = Field(min_length=1, max_length=100, pattern=PLAN_CODE_PATTERN)
    name: str = Field(default="", max_length=200)
    percent_off: str | None = Field(
        default=None,
        pattern=r"^[0-9]{1,3}(\.[0-9]{1,4})?$",
        description='a percentage in (0, 100] as a decimal string, e.g. "12.5"',
    )
    amount_off: PositiveMinorUnits | None = None
    currency: Currency | None = Field(default=None, description="the currency of amount_off")
    duration: Literal["once", "repeating", "forever"]
    duration_in_periods: int | None = Field(default=None, ge=1, le=1200, description="repeating only")


class CouponOut(BaseModel):
    id: UUID
    code: str
    name: str
    percent_off: str | None
    amount_off: int | None
    currency: str | None
    duration: str
    duration_in_periods: int | None


class CouponWritten(CouponOut, Written):
    pass


# ---------------------------------------------------------------- credit notes
class CreditNoteLineIn(Request):
    line_id: UUID
    amount: PositiveMinorUnits


class CreditNoteIssue(Command):
    reason: Literal["duplicate", "fraudulent", "order_change", "product_unsatisfactory", "other"]
    amount: PositiveMinorUnits | None = None
    lines: list[CreditNoteLineIn] | None = Field(default=None, min_length=1, max_length=1000)
    refund_amount: MinorUnits | None = None
    credit_amount: MinorUnits | None = None
    memo: str | None = Field(default=None, max_length=1000)


class CreditNoteOut(BaseModel):
    id: UUID
    number: str
    invoice_id: UUID
    customer_id: UUID
    currency: str
    reason: str
    amount: int
    lines: list[dict[str, Any]]
    against_remaining: int = Field(description="what the note took off what remained to pay")
    refund_amount: int
    credit_amount: int = Field(description="credited to the customer's balance")
    memo: str | None
    created_at: datetime


class CreditNoteWritten(CreditNoteOut, Written):
    pass


class BalanceOut(BaseModel):
    currency: str
    amount: int = Field(description="owed to the customer (positive), minor units")


class BalancesOut(BaseModel):
    customer_id: UUID
    balances: list[BalanceOut]


class UsageRecordOut(BaseModel):
    record_id: UUID
    position: int
    metric: str
    occurred_at: datetime
    value: str


class LineSourcesOut(BaseModel):
    invoice_id: UUID
    line_id: UUID
    records: int
    records_digest: str | None
    data: list[UsageRecordOut]
