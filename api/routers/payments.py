from __future__ import annotations

import hashlib
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Header, Query, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import AdminKey, ContainerDep, LedgerDep, ReadConn, command_context, written
from api.errors import ApiProblem
from api.references import body_references
from api.routers.events import read_body
from api.routing import LedgerRoute
from api.schemas.common import ListOf
from api.schemas.resources import (
    PaymentCallback,
    PaymentCreate,
    PaymentFail,
    PaymentOut,
    PaymentRefund,
    PaymentRetry,
    PaymentSucceed,
    PaymentWritten,
)
from application import commands as c
from application.commands import CommandContext
from domain.errors import NotFound
from infra.payment_backend import verify_callback_signature
from projections import queries

router = APIRouter(route_class=LedgerRoute, prefix="/v1/payments", tags=["payments"])
StatusFilter = Annotated[
    str | None, Query(alias="status", pattern="^(pending|succeeded|failed|refunded|canceled)$")
]


@router.post(
    "/callback",
    response_model=PaymentWritten,
    responses={
        401: {"description": "missing or bad X-Signature: nothing is recorded"},
        404: {"description": "no payment with this external_payment_id, or no payment backend configured"},
        409: {"description": "the payment already had another outcome"},
        413: {"description": "body too large"},
    },
    openapi_extra={"security": []},
)
async def payment_callback(
    request: Request,
    container: ContainerDep,
    x_signature: Annotated[str | None, Header(description="sha256=<hex HMAC-SHA256 of the raw body>")] = None,
) -> dict[str, Any]:
    """The payment backend says what became of a payment (SPEC 8). Authenticated by its
    signature (HMAC-SHA256 of the raw body with the backend's key), not by an API key. The same
    callback again (same `event_id`) answers as the first time and records nothing."""
    settings = container.settings
    if container.payment_backend is None or settings.payment_backend_api_key is None:
        raise ApiProblem(404, "Not found", "no payment backend is configured", code="not_configured")
    body = await read_body(request, settings.max_body_bytes)
    if not verify_callback_signature(body, x_signature, settings.payment_backend_api_key.get_secret_value()):
        raise ApiProblem(401, "Unauthorized", "missing or bad X-Signature", code="invalid_signature")
    try:
        callback = PaymentCallback.model_validate_json(body)
    except ValidationError as invalid:
        raise RequestValidationError(invalid.errors()) from None
    cmd = c.RecordBackendOutcome(
        external_payment_id=callback.external_payment_id,
        status=callback.status,
        amount=callback.amount,
        currency=callback.currency,
        failure_code=callback.failure_code,
        failure_message=callback.failure_message,
    )
    ctx = CommandContext(
        occurred_at=container.ledger.now(),
        source="payment_backend",
        actor="payment_backend",
        idempotency_key=f"payment-callback:{callback.event_id}",
        request_hash=hashlib.sha256(body).hexdigest(),
    )
    outcome = await run_in_threadpool(container.ledger.record_backend_outcome, cmd, ctx)
    return written(container, outcome)


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
