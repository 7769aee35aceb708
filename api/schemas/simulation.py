"""Bodies of the simulation (demo) endpoints; every field is optional, an empty body is fine."""

from __future__ import annotations

from uuid import UUID

from pydantic import ConfigDict, Field

from api.schemas.common import Request, Written


class SimulationOnboarding(Request):
    plan_code: str | None = Field(default=None, min_length=1, max_length=100)
    trial_days: int | None = Field(default=None, ge=0, le=730, description="default: the plan's")


class SimulationTarget(Request):
    customer_id: UUID | None = Field(default=None, description="default: a random one")


class SimulationChurn(SimulationTarget):
    at_period_end: bool = False


class SimulationOut(Written):
    model_config = ConfigDict(extra="allow")

    scenario: str
    customer_id: UUID
    subscription_id: UUID
