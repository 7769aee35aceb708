from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, status

from api.deps import (
    AdminKey,
    ContainerDep,
    EntitledConn,
    LedgerDep,
    Now,
    ReadConn,
    ReadKey,
    Today,
    command_context,
    written,
)
from api.errors import ApiProblem
from api.routing import LedgerRoute
from api.schemas.common import ListOf, Moment
from api.schemas.integrations import CustomerStatusOut
from api.schemas.resources import (
    BalancesOut,
    CustomerRegister,
    CustomerUpdate,
    CustomerView,
    CustomerWritten,
    DiscountApply,
    InvoiceOut,
)
from application import commands as c
from domain.errors import NotFound
from projections import queries
from projections.customer_status import customer_status

router = APIRouter(route_class=LedgerRoute, prefix="/v1/customers", tags=["customers"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CustomerWritten)
def register_customer(
    body: CustomerRegister,
    request: Request,
    ledger: LedgerDep,
    container: ContainerDep,
    principal: AdminKey,
) -> dict[str, Any]:
    """Register a customer. The same registration again (same external_id and fields) answers
    the same and records nothing; a different one with that external_id is 409."""
    cmd = c.RegisterCustomer(**body.model_dump(exclude={"effective_at"}, exclude_none=False))
    outcome = ledger.register_customer(cmd, command_context(request, principal, body, body.effective_at))
    return written(container, outcome)


@router.patch("/{customer_id}", response_model=CustomerWritten)
def update_customer(
    customer_id: UUID,
    body: CustomerUpdate,
    request: Request,
    ledger: LedgerDep,
    container: ContainerDep,
    principal: AdminKey,
) -> dict[str, Any]:
    cmd = c.UpdateCustomer(customer_id=customer_id, **body.model_dump(exclude={"effective_at"}))
    outcome = ledger.update_customer(cmd, command_context(request, principal, body, body.effective_at))
    return written(container, outcome)


@router.get("", response_model=ListOf[CustomerView])
def list_customers(
    conn: ReadConn,
    today: Today,
    status_: Annotated[str | None, Query(alias="status", pattern="^(active|at_risk|churned)$")] = None,
    q: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=200,
            description="search: name, e-mail or external id containing this text (any case), or the id",
        ),
    ] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    search = q.strip() if q else None
    page = queries.list_customers(
        conn, status=status_, today=today, cursor=cursor, limit=limit, search=search or None
    )
    return {"data": page.items, "next_cursor": page.next_cursor}


@router.get("/{customer_id}/status", response_model=CustomerStatusOut)
def get_customer_status(customer_id: UUID, conn: EntitledConn, today: Today, now: Now) -> dict[str, Any]:
    """The customer's status and its subscription's (trial, period, cancellation), for read keys
    and for an ingest key scoped to this customer (an instance asking about its own billing)."""
    found = customer_status(conn, customer_id, today, now)
    if found is None:
        raise NotFound(f"no customer with id {customer_id}")
    return found


@router.get("/{customer_id}", response_model=CustomerView)
def get_customer(customer_id: UUID, conn: ReadConn, today: Today) -> dict[str, Any]:
    row = queries.get_customer(conn, customer_id, today)
    if row is None:
        raise NotFound(f"no customer with id {customer_id}")
    return row


@router.post("/{customer_id}/discount", response_model=CustomerWritten)
def apply_customer_discount(
    customer_id: UUID,
    body: DiscountApply,
    request: Request,
    ledger: LedgerDep,
    container: ContainerDep,
    principal: AdminKey,
) -> dict[str, Any]:
    """Apply a coupon to all the customer's invoices (a subscription's own discount wins)."""
    cmd = c.ApplyDiscount(coupon=body.coupon, customer_id=customer_id)
    outcome = ledger.apply_discount(cmd, command_context(request, principal, body, body.effective_at))
    return written(container, outcome)


@router.get("/{customer_id}/balance", response_model=BalancesOut)
def get_customer_balance(customer_id: UUID, conn: ReadConn) -> dict[str, Any]:
    """The customer's credit balance per currency: positive amounts are owed to the customer and
    pay its next invoices at finalization."""
    if queries.get_customer_row(conn, customer_id) is None:
        raise NotFound(f"no customer with id {customer_id}")
    return {"customer_id": customer_id, "balances": queries.customer_balances(conn, customer_id)}


@router.get("/{customer_id}/upcoming-invoice", response_model=InvoiceOut)
def get_upcoming_invoice(
    customer_id: UUID,
    ledger: LedgerDep,
    principal: ReadKey,
    subscription_id: UUID | None = None,
    known_at: Annotated[
        Moment | None,
        Query(description="answer as the ledger knew it then: only what was recorded by then (audit role)"),
    ] = None,
) -> dict[str, Any]:
    """The invoice the subscription's next period boundary would make if it came now (nothing is
    recorded): the same billing engine, run on copies. With `known_at`, as known at that moment."""
    if known_at is not None and not principal.may("audit"):
        raise ApiProblem(
            403, "Forbidden", f"a {principal.role} key may not ask for known_at", code="forbidden"
        )
    return ledger.upcoming_invoice(customer_id, subscription_id, known_at)
