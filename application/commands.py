"""Commands: what a caller asks the ledger to do, in the imperative, already validated in shape.
Business rules are checked by the aggregates, not here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from uuid import UUID


@dataclass(frozen=True)
class CommandContext:
    """Who asks, when it happened in the world, and how to make a retry harmless."""

    occurred_at: datetime
    source: str = "api"
    actor: str | None = None
    correlation_id: UUID | None = None
    reason: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None


@dataclass(frozen=True)
class DefinePlan:
    code: str
    name: str
    currency: str
    amount: int
    interval: str
    interval_count: int = 1
    trial_days: int = 0
    quotas: dict[str, dict[str, Any]] = field(default_factory=dict)
    usage_prices: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class RevisePlan:
    """New terms for an existing plan: they apply to new subscriptions and explicit changes."""

    code: str
    name: str
    currency: str
    amount: int
    interval: str
    interval_count: int = 1
    trial_days: int = 0
    quotas: dict[str, dict[str, Any]] = field(default_factory=dict)
    usage_prices: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class RetirePlan:
    code: str


@dataclass(frozen=True)
class RegisterCustomer:
    external_id: str
    email: str
    currency: str
    name: str = ""
    tax_rate_bps: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    tax_exempt: str = "none"
    vat_id: str | None = None
    address: dict[str, Any] | None = None
    net_terms_days: int = 30
    collection_method: str = "send_invoice"


@dataclass(frozen=True)
class UpdateCustomer:
    customer_id: UUID
    email: str | None = None
    name: str | None = None
    tax_rate_bps: int | None = None
    metadata: dict[str, Any] | None = None
    tax_exempt: str | None = None
    vat_id: str | None = None
    address: dict[str, Any] | None = None
    net_terms_days: int | None = None
    collection_method: str | None = None


@dataclass(frozen=True)
class ArchiveCustomer:
    customer_id: UUID


@dataclass(frozen=True)
class Onboard:
    """Register a customer, start its subscription and issue it an ingest key (SPEC 10)."""

    external_id: str
    name: str
    email: str
    plan_code: str
    trial_days: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StartSubscription:
    customer_id: UUID
    plan_code: str
    quantity: int = 1
    trial_days: int | None = None
    billed_by: str = "ledger"


@dataclass(frozen=True)
class ChangeSubscription:
    subscription_id: UUID
    plan_code: str | None = None
    quantity: int | None = None
    proration_behavior: str = "create_prorations"


@dataclass(frozen=True)
class AddSubscriptionItem:
    """Put an add-on (a plan's terms × quantity) on a subscription, beside its plan (SPEC 10)."""

    subscription_id: UUID
    plan_code: str
    quantity: int = 1
    proration_behavior: str = "create_prorations"


@dataclass(frozen=True)
class ChangeSubscriptionItem:
    subscription_id: UUID
    item_id: UUID
    quantity: int
    proration_behavior: str = "create_prorations"


@dataclass(frozen=True)
class RemoveSubscriptionItem:
    subscription_id: UUID
    item_id: UUID
    proration_behavior: str = "create_prorations"


@dataclass(frozen=True)
class CancelSubscription:
    subscription_id: UUID
    at_period_end: bool
    proration_behavior: str = "create_prorations"


@dataclass(frozen=True)
class RenewSubscription:
    subscription_id: UUID


@dataclass(frozen=True)
class EndTrial:
    subscription_id: UUID


@dataclass(frozen=True)
class EndSubscriptionAtPeriodEnd:
    subscription_id: UUID


@dataclass(frozen=True)
class InvoiceLine:
    description: str
    quantity: int
    unit_amount: int
    period_start: datetime | None = None
    period_end: datetime | None = None


@dataclass(frozen=True)
class DraftInvoice:
    customer_id: UUID
    currency: str
    lines: list[InvoiceLine]
    subscription_id: UUID | None = None
    discount: int = 0


@dataclass(frozen=True)
class FinalizeInvoice:
    invoice_id: UUID
    due_date: date


@dataclass(frozen=True)
class VoidInvoice:
    invoice_id: UUID


@dataclass(frozen=True)
class MarkInvoiceUncollectible:
    invoice_id: UUID


@dataclass(frozen=True)
class InitiatePayment:
    customer_id: UUID
    amount: int
    currency: str
    invoice_id: UUID | None = None
    provider_reference: str | None = None


@dataclass(frozen=True)
class SucceedPayment:
    payment_id: UUID


@dataclass(frozen=True)
class FailPayment:
    payment_id: UUID
    failure_code: str | None = None
    failure_message: str | None = None


@dataclass(frozen=True)
class RetryPayment:
    payment_id: UUID


@dataclass(frozen=True)
class CancelPayment:
    payment_id: UUID
    reason: str = "canceled"


@dataclass(frozen=True)
class StartCollection:
    """Make the `attempt`-th attempt to collect an invoice through the payment backend."""

    invoice_id: UUID
    attempt: int


@dataclass(frozen=True)
class SubmitPayment:
    """The payment backend took a payment under its own id."""

    payment_id: UUID
    external_payment_id: str
    payment_url: str | None = None


@dataclass(frozen=True)
class RecordBackendOutcome:
    """What the payment backend says became of a payment (its callback, or its status polled)."""

    external_payment_id: str
    status: str
    amount: int | None = None
    currency: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None


@dataclass(frozen=True)
class RefundPayment:
    payment_id: UUID
    amount: int


@dataclass(frozen=True)
class RaiseAlert:
    alert_id: UUID
    alert_type: str
    severity: str
    subject: str
    message: str
    customer_id: UUID | None = None


@dataclass(frozen=True)
class ResolveAlert:
    alert_id: UUID
    note: str


@dataclass(frozen=True)
class RecordClockTick:
    day: date


@dataclass(frozen=True)
class Advance:
    """Record what fell due on a time-driven aggregate by the command's moment."""

    aggregate_id: UUID


@dataclass(frozen=True)
class DefineCoupon:
    code: str
    duration: str
    name: str = ""
    percent_off: str | None = None
    amount_off: int | None = None
    currency: str | None = None
    duration_in_periods: int | None = None


@dataclass(frozen=True)
class ApplyDiscount:
    """Apply a coupon to a subscription's invoices, or to all of a customer's."""

    coupon: str
    subscription_id: UUID | None = None
    customer_id: UUID | None = None


@dataclass(frozen=True)
class IssueCreditNote:
    invoice_id: UUID
    reason: str
    amount: int | None = None
    lines: list[dict[str, Any]] | None = None  # [{line_id, amount}]
    refund_amount: int | None = None
    credit_amount: int | None = None
    memo: str | None = None
