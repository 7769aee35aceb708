from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request

from api.deps import AdminKey, ContainerDep, LedgerDep, ReadConn, command_context, written
from api.routing import LedgerRoute
from api.schemas.common import ListOf
from api.schemas.resources import AlertOut, AlertResolve, AlertWritten
from application import commands as c
from projections import queries

router = APIRouter(route_class=LedgerRoute, prefix="/v1/alerts", tags=["alerts"])


@router.get("", response_model=ListOf[AlertOut])
def list_alerts(
    conn: ReadConn,
    customer_id: UUID | None = None,
    severity: Annotated[str | None, Query(pattern="^(low|medium|high|critical)$")] = None,
    status: Annotated[str | None, Query(pattern="^(open|resolved)$")] = None,
    type: Annotated[str | None, Query(max_length=100)] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    page = queries.list_alerts(
        conn,
        customer_id=customer_id,
        status=status,
        severity=severity,
        alert_type=type,
        cursor=cursor,
        limit=limit,
    )
    return {"data": page.items, "next_cursor": page.next_cursor}


@router.post("/{alert_id}/resolve", response_model=AlertWritten)
def resolve_alert(
    alert_id: UUID,
    body: AlertResolve,
    request: Request,
    ledger: LedgerDep,
    container: ContainerDep,
    principal: AdminKey,
) -> dict[str, Any]:
    cmd = c.ResolveAlert(alert_id, note=body.note)
    outcome = ledger.resolve_alert(cmd, command_context(request, principal, body, body.effective_at))
    return written(container, outcome)
