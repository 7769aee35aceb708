from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Query, Request, status

from api.deps import AdminKey, ContainerDep, LedgerDep, ReadConn, command_context, written
from api.references import body_references
from api.schemas.common import ListOf
from api.schemas.resources import (
    PaymentCreate,
    PaymentFail,
    PaymentOut,
    PaymentRefund,
    PaymentRetry,
    PaymentSucceed,
    PaymentWritten,
)
from application import commands as c
from domain.errors import NotFound
from projections import queries

router = APIRouter(prefix="/v1/payments", tags=["payments"])
StatusFilter = Annotated[str | None, Query(alias="status", pattern="^(pending|succeeded|failed|refunded)$")]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=PaymentWritten)
def initiate_payment(
    body: PaymentCreate,
    request: Request,
    ledger: LedgerDep,
    container: ContainerDep,
    principal: AdminKey,
) -> dict[str, Any]:
    cmd = c.InitiatePayment(**body.model_dump(exclude={"effective_at"}))
    with body_references(customer_id=body.customer_id, invoice_id=body.invoice_id):
        outcome = ledger.initiate_payment(cmd, command_context(request, principal, body, body.effective_at))
    return written(container, outcome)


@router.post("/{payment_id}/succeed", response_model=PaymentWritten)
def succeed_payment(
    payment_id: UUID,
    request: Request,
    ledger: LedgerDep,
    container: ContainerDep,
    principal: AdminKey,
    body: Annotated[PaymentSucceed | None, Body()] = None,
) -> dict[str, Any]:
    body = body or PaymentSucceed()
    outcome = ledger.succeed_payment(
        c.SucceedPayment(payment_id), command_context(request, principal, body, body.effective_at)
    )
    return written(container, outcome)


@router.post("/{payment_id}/fail", response_model=PaymentWritten)
def fail_payment(
    payment_id: UUID,
    request: Request,
    ledger: LedgerDep,
    container: ContainerDep,
    principal: AdminKey,
    body: Annotated[PaymentFail | None, Body()] = None,
) -> dict[str, Any]:
    body = body or PaymentFail()
    cmd = c.FailPayment(payment_id, failure_code=body.failure_code, failure_message=body.failure_message)
    outcome = ledger.fail_payment(cmd, command_context(request, principal, body, body.effective_at))
    return written(container, outcome)


@router.post("/{payment_id}/retry", response_model=PaymentWritten)
def retry_payment(
    payment_id: UUID,
    request: Request,
    ledger: LedgerDep,
    container: ContainerDep,
    principal: AdminKey,
    body: Annotated[PaymentRetry | None, Body()] = None,
) -> dict[str, Any]:
    """Record a new attempt of a failed payment; it is pending until its outcome is recorded."""
    body = body or PaymentRetry()
    outcome = ledger.retry_payment(
        c.RetryPayment(payment_id), command_context(request, principal, body, body.effective_at)
    )
    return written(container, outcome)


@router.post("/{payment_id}/refund", response_model=PaymentWritten)
def refund_payment(
    payment_id: UUID,
    body: PaymentRefund,
    request: Request,
    ledger: LedgerDep,
    container: ContainerDep,
    principal: AdminKey,
) -> dict[str, Any]:
    cmd = c.RefundPayment(payment_id, amount=body.amount)
    outcome = ledger.refund_payment(cmd, command_context(request, principal, body, body.effective_at))
    return written(container, outcome)


@router.get("", response_model=ListOf[PaymentOut])
def list_payments(
    conn: ReadConn,
    customer_id: UUID | None = None,
    status_: StatusFilter = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    page = queries.list_payments(conn, customer_id=customer_id, status=status_, cursor=cursor, limit=limit)
    return {"data": page.items, "next_cursor": page.next_cursor}


@router.get("/{payment_id}", response_model=PaymentOut)
def get_payment(payment_id: UUID, conn: ReadConn) -> dict[str, Any]:
    row = queries.get_payment(conn, payment_id)
    if row is None:
        raise NotFound(f"no payment with id {payment_id}")
    return row
