"""Usage quotas per customer, metric and period, and entitlements (SPEC section 4)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query

from api.deps import EntitledConn, KnownAtReplayConn, Now
from api.routing import LedgerRoute
from api.schemas.common import ListOf
from api.schemas.metrics import EntitlementOut, QuotaOut
from projections import metric_queries as mq

router = APIRouter(route_class=LedgerRoute, tags=["usage"])
GROUP_QUERY = 'the group (value of the quota\'s `group_by` property; "" for usage without it)'


@router.get("/v1/usage/quotas", response_model=ListOf[QuotaOut])
def list_quotas(
    conn: KnownAtReplayConn,
    now: Now,
    customer_id: UUID | None = None,
    metric: Annotated[str | None, Query(max_length=100)] = None,
    current: Annotated[bool, Query(description="only the period containing now")] = False,
    group: Annotated[str | None, Query(max_length=200, description=GROUP_QUERY)] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    at = now if current else None
    rows, next_cursor = mq.quotas(conn, customer_id, metric, at, cursor, limit, group=group)
    return {"data": rows, "next_cursor": next_cursor}


@router.get("/v1/customers/{customer_id}/entitlements/{metric}", response_model=EntitlementOut)
def get_entitlement(
    customer_id: UUID,
    metric: str,
    conn: EntitledConn,
    now: Now,
    group: Annotated[str | None, Query(max_length=200, description=GROUP_QUERY)] = None,
) -> dict[str, Any]:
    """May the customer use more of this metric now? A hard quota says no once exceeded. A quota
    that groups by a usage property answers for `group` (default ""); one that does not ignores it."""
    return mq.entitlement(conn, customer_id, metric, now, group)
