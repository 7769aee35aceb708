"""POST /v1/onboarding (SPEC section 10, seed 003): register a customer, start its subscription and
issue its billing token (an ingest key scoped to it), in one use case."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status

from api.deps import AdminKey, ContainerDep, command_context
from api.routing import LedgerRoute
from api.schemas.integrations import OnboardingOut, OnboardingRequest
from application import commands as c
from application.onboarding import onboard

router = APIRouter(route_class=LedgerRoute, prefix="/v1/onboarding", tags=["integrations"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=OnboardingOut,
    responses={
        200: {"model": OnboardingOut, "description": "onboarded before: the same answer, without the key"},
        409: {"description": "this external_id was onboarded with another request"},
    },
)
def onboard_customer(
    body: OnboardingRequest,
    request: Request,
    response: Response,
    container: ContainerDep,
    principal: AdminKey,
) -> dict[str, Any]:
    """Register the customer (or take the one registered under `external_id`), start its
    subscription on `plan_code` (the plan's trial, or `trial_days`) and issue an ingest key scoped
    to it: the billing token its instances report usage and read their status with. Idempotent on
    `external_id`: the same request again answers 200 with the same ids and `ingest_key: null`
    (the key is shown once, on the 201); another request under that external_id is 409."""
    cmd = c.Onboard(**body.model_dump(exclude={"effective_at"}))
    ctx = command_context(request, principal, body, body.effective_at)
    onboarded = onboard(container.ledger, container.keys, cmd, ctx)
    container.wake_projection()
    if onboarded.issued_before:
        response.status_code = status.HTTP_200_OK
    return {
        **onboarded.outcome.receipt,
        "ingest_key": onboarded.ingest_key,
        "ingest_key_issued_before": onboarded.issued_before,
        "position": onboarded.outcome.position,
    }
