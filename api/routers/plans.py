from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status

from api.deps import AdminKey, ContainerDep, LedgerDep, ReadConn, command_context, written
from api.schemas.common import ListOf
from api.schemas.resources import PlanDefine, PlanOut, PlanWritten
from application import commands as c
from domain.errors import NotFound
from projections import queries

router = APIRouter(prefix="/v1/plans", tags=["plans"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=PlanWritten)
def define_plan(
    body: PlanDefine,
    request: Request,
    response: Response,
    ledger: LedgerDep,
    container: ContainerDep,
    principal: AdminKey,
) -> dict[str, Any]:
    """Define a plan, or revise it when the code exists (same terms: nothing recorded)."""
    cmd = c.DefinePlan(
        **body.model_dump(exclude={"effective_at", "quotas", "usage_prices"}),
        quotas={k: v.model_dump() for k, v in body.quotas.items()},
        usage_prices={k: v.model_dump(exclude_none=True) for k, v in body.usage_prices.items()},
    )
    outcome = ledger.define_plan(cmd, command_context(request, principal, body, body.effective_at))
    if not outcome.created:
        response.status_code = status.HTTP_200_OK
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
