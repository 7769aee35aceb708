from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, status

from api.deps import AdminKey, ContainerDep, LedgerDep, ReadConn, command_context, written
from api.routing import LedgerRoute
from api.schemas.common import ListOf
from api.schemas.resources import PLAN_CODE_PATTERN, PlanDefine, PlanOut, PlanRevise, PlanTerms, PlanWritten
from application import commands as c
from domain.errors import NotFound
from projections import queries

router = APIRouter(route_class=LedgerRoute, prefix="/v1/plans", tags=["plans"])
PlanCode = Annotated[str, Path(min_length=1, max_length=100, pattern=PLAN_CODE_PATTERN)]


def _terms(body: PlanTerms) -> dict[str, Any]:
    return {
        **body.model_dump(exclude={"code", "effective_at", "quotas", "usage_prices"}),
        "quotas": {k: v.model_dump(exclude_none=True) for k, v in body.quotas.items()},
        "usage_prices": {k: v.model_dump(exclude_none=True) for k, v in body.usage_prices.items()},
    }


@router.post("", status_code=status.HTTP_201_CREATED, response_model=PlanWritten)
def define_plan(
    body: PlanDefine,
    request: Request,
    ledger: LedgerDep,
    container: ContainerDep,
    principal: AdminKey,
) -> dict[str, Any]:
    """Define a plan. The same definition again answers as the first time and records nothing;
    other terms under an existing code are 409: revise it with `POST /v1/plans/{code}/revise`."""
    cmd = c.DefinePlan(code=body.code, **_terms(body))
    outcome = ledger.define_plan(cmd, command_context(request, principal, body, body.effective_at))
    return written(container, outcome)


@router.post("/{code}/revise", response_model=PlanWritten)
def revise_plan(
    code: PlanCode,
    body: PlanRevise,
    request: Request,
    ledger: LedgerDep,
    container: ContainerDep,
    principal: AdminKey,
) -> dict[str, Any]:
    """Replace a plan's terms. They apply to new subscriptions and explicit plan changes; running
    subscriptions keep the terms they started under. The same terms again record nothing."""
    cmd = c.RevisePlan(code=code, **_terms(body))
    outcome = ledger.revise_plan(cmd, command_context(request, principal, body, body.effective_at))
    return written(container, outcome)


@router.get("", response_model=ListOf[PlanOut])
def list_plans(
    conn: ReadConn,
    status_: Annotated[str | None, Query(alias="status", pattern="^(active|retired)$")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    page = queries.list_plans(conn, status=status_, cursor=cursor, limit=limit)
    return {"data": page.items, "next_cursor": page.next_cursor}


@router.get("/{code}", response_model=PlanOut)
def get_plan(code: str, conn: ReadConn) -> dict[str, Any]:
    row = queries.get_plan(conn, code)
    if row is None:
        raise NotFound(f"no plan with code '{code}'")
    return row
