"""Request and response bodies of the integrations of SPEC section 10: onboarding with a billing
token, a customer's status for its own key, and meter reports."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, EmailStr, Field, StrictFloat, StrictInt

from api.schemas.common import Command, Request
from api.schemas.resources import PLAN_CODE_PATTERN
from domain.money import MAX_QUANTITY


# ---------------------------------------------------------------- onboarding
class OnboardingRequest(Command):
    external_id: str = Field(min_length=1, max_length=200, description="the customer's id in your system")
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr
    plan_code: str = Field(min_length=1, max_length=100, pattern=PLAN_CODE_PATTERN)
    trial_days: int | None = Field(default=None, ge=0, le=730, description="default: the plan's trial")
    metadata: dict[str, Any] = Field(default_factory=dict)


class OnboardingOut(BaseModel):
    customer_id: UUID
    subscription_id: UUID
    trial_end: datetime | None
    ingest_key: str | None = Field(
        description="the billing token: an ingest key scoped to this customer, shown on the first answer"
        " only (null when an earlier answer showed it)"
    )
    ingest_key_id: UUID
    ingest_key_issued_before: bool = Field(description="true when an earlier answer showed the key")
    position: int = Field(description="log position of the onboarding; pass as min_position")


# ---------------------------------------------------------------- status
class SubscriptionStatus(BaseModel):
    id: UUID
    status: Literal["trialing", "active", "past_due", "canceled"]
    plan_code: str
    trial_active: bool = Field(description="whether the subscription is in its trial now")
    trial_end: datetime | None = Field(description="when the trial ends (or ended)")
    current_period_start: datetime
    current_period_end: datetime
    cancel_at_period_end: bool


class CustomerStatusOut(BaseModel):
    customer_id: UUID
    name: str
    status: Literal["active", "at_risk", "churned"]
    subscription: SubscriptionStatus | None = Field(
        description="the latest started subscription that is not canceled, else the latest one; null if none"
    )


# ---------------------------------------------------------------- meter reports
Count = Annotated[StrictInt, Field(ge=0, le=MAX_QUANTITY)]


class MeterEventRequest(Request):
    """Either `user_count` (the metric `active_users`) or `metric` and `value`."""

    customer_id: UUID | None = Field(
        default=None,
        description="the customer reported on: by default the key's; a key scoped to another customer is 403",
    )
    metric: str | None = Field(default=None, min_length=1, max_length=200)
    value: StrictInt | StrictFloat | str | None = Field(
        default=None, description="a number of at least 0 (at most 10^9), or a decimal string"
    )
    user_count: Count | None = Field(default=None, description="the active users now: metric `active_users`")
    timestamp: datetime = Field(
        description="when it was measured (ISO 8601); with the metric, the report's key"
    )
    properties: dict[str, Any] = Field(default_factory=dict)


class MeterEventOut(BaseModel):
    id: UUID = Field(description="the usage record")
    customer_id: UUID
    metric: str
    value: str = Field(description="the measured value, as an exact decimal")
    timestamp: datetime
    properties: dict[str, Any]
    position: int = Field(description="log position of the usage record; pass as min_position")
