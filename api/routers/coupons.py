"""Coupons (SPEC 7, "Discounts"): define them; apply them through a subscription or customer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status

from api.deps import AdminKey, ContainerDep, LedgerDep, ReadConn, command_context, written
from api.routing import LedgerRoute
from api.schemas.common import ListOf
from api.schemas.resources import CouponDefine, CouponOut, CouponWritten
from application import commands as c
from domain.errors import NotFound
from projections import queries

router = APIRouter(route_class=LedgerRoute, prefix="/v1/coupons", tags=["coupons"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CouponWritten)
def define_coupon(
    body: CouponDefine,
    request: Request,
    ledger: LedgerDep,
    container: ContainerDep,
    principal: AdminKey,
) -> dict[str, Any]:
    """A percentage (`percent_off`) or an amount (`amount_off` + `currency`) off, applied to the
    subtotal before tax: `once`, `repeating` for `duration_in_periods` invoices, or `forever`.
    The same definition again answers as the first time; other terms under the code are 409."""
    cmd = c.DefineCoupon(**body.model_dump(exclude={"effective_at"}))
    outcome = ledger.define_coupon(cmd, command_context(request, principal, body, body.effective_at))
    return written(container, outcome)


@router.get("", response_model=ListOf[CouponOut])
def list_coupons(
    conn: ReadConn, cursor: str | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> dict[str, Any]:
    page = queries.list_coupons(conn, cursor=cursor, limit=limit)
    return {"data": page.items, "next_cursor": page.next_cursor}


@router.get("/{code}", response_model=CouponOut)
def get_coupon(code: str, conn: ReadConn) -> dict[str, Any]:
    row = queries.get_coupon(conn, code)
    if row is None:
        raise NotFound(f"no coupon with code '{code}'")
    return row
