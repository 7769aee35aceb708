from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Query, Request, status

from api.deps import AdminKey, ContainerDep, LedgerDep, ReadConn, command_context, written
from api.references import body_references
from api.routing import LedgerRoute
from api.schemas.common import ListOf
from api.schemas.resources import (
    DiscountApply,
    ProrationBehavior,
    SubscriptionCancel,
    SubscriptionChange,
    SubscriptionItemAdd,
    SubscriptionItemChange,
    SubscriptionItemWritten,
    SubscriptionRenew,
    SubscriptionStart,
    SubscriptionView,
    SubscriptionWritten,
)
from application import commands as c
from domain.errors import NotFound
from projections import queries

router = APIRouter(route_class=LedgerRoute, prefix="/v1/subscriptions", tags=["subscriptions"])
StatusFilter = Annotated[str | None, Query(alias="status", pattern="^(trialing|active|past_due|canceled)$")]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=SubscriptionWritten)
def start_subscription(
    body: SubscriptionStart,
    request: Request,
    ledger: LedgerDep,
    container: ContainerDep,
    principal: AdminKey,
) -> dict[str, Any]:
    cmd = c.StartSubscription(**body.model_dump(exclude={"effective_at"}))
    with body_references(customer_id=body.customer_id):
        outcome = ledger.start_subscription(cmd, command_context(request, principal, body, body.effective_at))
    return written(container, outcome)


@router.post("/{subscription_id}/change", response_model=SubscriptionWritten)
def change_subscription(
    subscription_id: UUID,
    body: SubscriptionChange,
    request: Request,
    ledger: LedgerDep,
    container: ContainerDep,
    principal: AdminKey,
) -> dict[str, Any]:
    cmd = c.ChangeSubscription(
        subscription_id,
        plan_code=body.plan_code,
        quantity=body.quantity,
        proration_behavior=body.proration_behavior,
    )
    outcome = ledger.change_subscription(cmd, command_context(request, principal, body, body.effective_at))
    return written(container, outcome)


@router.post(
    "/{subscription_id}/items", status_code=status.HTTP_201_CREATED, response_model=SubscriptionItemWritten
)
def add_subscription_item(
    subscription_id: UUID,
    body: SubscriptionItemAdd,
    request: Request,
    ledger: LedgerDep,
    container: ContainerDep,
    principal: AdminKey,
) -> dict[str, Any]:
    """Put an add-on on the subscription (SPEC 10): a plan in its currency and billing interval,
    not on it already, billed with it in advance on each period's invoice and counted in its MRR.
    Added part-way through a period already billed, the rest of it is prorated by the second."""
    cmd = c.AddSubscriptionItem(
        subscription_id,
        plan_code=body.plan_code,
        quantity=body.quantity,
        proration_behavior=body.proration_behavior,
    )
    outcome = ledger.add_subscription_item(cmd, command_context(request, principal, body, body.effective_at))
    return written(container, outcome)


@router.patch("/{subscription_id}/items/{item_id}", response_model=SubscriptionItemWritten)
def change_subscription_item(
    subscription_id: UUID,
    item_id: UUID,
    body: SubscriptionItemChange,
    request: Request,
    ledger: LedgerDep,
    container: ContainerDep,
    principal: AdminKey,
) -> dict[str, Any]:
    """Set an add-on item's quantity, prorated as a change of the plan's quantity is."""
    cmd = c.ChangeSubscriptionItem(
        subscription_id, item_id, quantity=body.quantity, proration_behavior=body.proration_behavior
    )
    outcome = ledger.change_subscription_item(
        cmd, command_context(request, principal, body, body.effective_at)
    )
    return written(container, outcome)


@router.delete(
    "/{subscription_id}/items/{item_id}",
    response_model=SubscriptionItemWritten,
    responses={409: {"description": "The subscription is canceled, or it kept changing"}},
)
def remove_subscription_item(
    subscription_id: UUID,
    item_id: UUID,
    request: Request,
    ledger: LedgerDep,
    container: ContainerDep,
    principal: AdminKey,
    proration_behavior: Annotated[
        ProrationBehavior,
        Query(description="create_prorations: the unused time credited on the next invoice; none: no credit"),
    ] = "create_prorations",
    effective_at: Annotated[
        datetime | None, Query(description="business time (ISO 8601, UTC) of the removal; default now")
    ] = None,
) -> dict[str, Any]:
    """Take an add-on item off; answers the item as it was, with `removed_at`."""
    cmd = c.RemoveSubscriptionItem(subscription_id, item_id, proration_behavior=proration_behavior)
    outcome = ledger.remove_subscription_item(cmd, command_context(request, principal, None, effective_at))
    return written(container, outcome)


@router.post("/{subscription_id}/cancel", response_model=SubscriptionWritten)
def cancel_subscription(
    subscription_id: UUID,
    body: SubscriptionCancel,
    request: Request,
    ledger: LedgerDep,
    container: ContainerDep,
    principal: AdminKey,
) -> dict[str, Any]:
    cmd = c.CancelSubscription(
        subscription_id, at_period_end=body.at_period_end, proration_behavior=body.proration_behavior
    )
    outcome = ledger.cancel_subscription(cmd, command_context(request, principal, body, body.effective_at))
    return written(container, outcome)


@router.post("/{subscription_id}/renew", response_model=SubscriptionWritten)
def renew_subscription(
    subscription_id: UUID,
    request: Request,
    ledger: LedgerDep,
    container: ContainerDep,
    principal: AdminKey,
    body: Annotated[SubscriptionRenew | None, Body()] = None,
) -> dict[str, Any]:
    """Start the next billing period (the renewal occurs at the end of the current one)."""
    body = body or SubscriptionRenew()
    cmd = c.RenewSubscription(subscription_id)
    outcome = ledger.renew_subscription(cmd, command_context(request, principal, body, body.effective_at))
    return written(container, outcome)


@router.get("", response_model=ListOf[SubscriptionView])
def list_subscriptions(
    conn: ReadConn,
    customer_id: UUID | None = None,
    status_: StatusFilter = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    page = queries.list_subscriptions(
        conn, customer_id=customer_id, status=status_, cursor=cursor, limit=limit
    )
    return {"data": page.items, "next_cursor": page.next_cursor}


@router.get("/{subscription_id}", response_model=SubscriptionView)
def get_subscription(subscription_id: UUID, conn: ReadConn) -> dict[str, Any]:
    row = queries.get_subscription(conn, subscription_id)
    if row is None:
        raise NotFound(f"no subscription with id {subscription_id}")
    return row


@router.post("/{subscription_id}/discount", response_model=SubscriptionWritten)
def apply_subscription_discount(
    subscription_id: UUID,
    body: DiscountApply,
    request: Request,
    ledger: LedgerDep,
    container: ContainerDep,
    principal: AdminKey,
) -> dict[str, Any]:
    """Apply a coupon to the subscription's next invoices (it wins over its customer's discount)."""
    cmd = c.ApplyDiscount(coupon=body.coupon, subscription_id=subscription_id)
    outcome = ledger.apply_discount(cmd, command_context(request, principal, body, body.effective_at))
    return written(container, outcome)
