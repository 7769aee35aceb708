"""The ledger's clock: what "now" is, and (test clocks only) moving it forward."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from api.deps import AdminKey, ContainerDep, LedgerDep, ReadKey, command_context, written
from api.routing import LedgerRoute
from api.schemas.common import Request as RequestBody

router = APIRouter(route_class=LedgerRoute, prefix="/v1/ops/clock", tags=["operations"])


class ClockOut(BaseModel):
    now: datetime = Field(description="the ledger's now: the wall clock, or where a test clock moved it")
    wall_clock: datetime
    test_clock: bool = Field(description="whether LEDGER_ALLOW_TEST_CLOCK lets an admin move now forward")


class ClockAdvance(RequestBody):
    advance_to: datetime = Field(description="the new now (ISO 8601, UTC); later than the current now")


class ClockAdvanced(BaseModel):
    now: datetime
    position: int = Field(description="log position covering everything that fell due by `now`")


@router.get("", response_model=ClockOut)
def read_clock(ledger: LedgerDep, _: ReadKey) -> dict[str, Any]:
    return {"now": ledger.now(), "wall_clock": datetime.now(UTC), "test_clock": ledger.allow_test_clock}


@router.post("", response_model=ClockAdvanced)
def advance_clock(
    body: ClockAdvance, request: Request, ledger: LedgerDep, container: ContainerDep, principal: AdminKey
) -> dict[str, Any]:
    """Move the ledger's now forward (never back) and record everything time-driven that falls
    due by then (trials ending, renewals, scheduled cancellations, the days), as it would have
    happened. Only with LEDGER_ALLOW_TEST_CLOCK=true; never in production."""
    outcome = ledger.advance_test_clock(body.advance_to, command_context(request, principal, body, None))
    return written(container, outcome)
