from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Query, Request, status

from api.deps import AdminKey, ContainerDep, LedgerDep, ReadConn, command_context, written
from api.references import body_references
from api.schemas.common import ListOf
from api.schemas.resources import InvoiceDraft, InvoiceFinalize, InvoiceOut, InvoiceTransition, InvoiceWritten
from application import commands as c
from domain.errors import NotFound
from projections import queries

router = APIRouter(prefix="/v1/invoices", tags=["invoices"])
StatusFilter = Annotated[str | None, Query(alias="status", pattern="^(draft|open|paid|void|uncollectible)$")]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=InvoiceWritten)
def draft_invoice(
    body: InvoiceDraft,
    request: Request,
    ledger: LedgerDep,
    container: ContainerDep,
    principal: AdminKey,
) -> dict[str, Any]:
    cmd = c.DraftInvoice(
        customer_id=body.customer_id,
        currency=body.currency,
        subscription_id=body.subscription_id,
        discount=body.discount,
        lines=[c.InvoiceLine(**line.model_dump()) for line in body.lines],
    )
    with body_references(customer_id=body.customer_id, subscription_id=body.subscription_id):
        outcome = ledger.draft_invoice(cmd, command_context(request, principal, body, body.effective_at))
    return written(container, outcome)


@router.post("/{invoice_id}/finalize", response_model=InvoiceWritten)
def finalize_invoice(
    invoice_id: UUID,
    body: InvoiceFinalize,
    request: Request,
    ledger: LedgerDep,
    container: ContainerDep,
    principal: AdminKey,
) -> dict[str, Any]:
    cmd = c.FinalizeInvoice(invoice_id, due_date=body.due_date)
    outcome = ledger.finalize_invoice(cmd, command_context(request, principal, body, body.effective_at))
    return written(container, outcome)


@router.post("/{invoice_id}/void", response_model=InvoiceWritten)
def void_invoice(
    invoice_id: UUID,
    request: Request,
    ledger: LedgerDep,
    container: ContainerDep,
    principal: AdminKey,
    body: Annotated[InvoiceTransition | None, Body()] = None,
) -> dict[str, Any]:
    body = body or InvoiceTransition()
    outcome = ledger.void_invoice(
        c.VoidInvoice(invoice_id), command_context(request, principal, body, body.effective_at)
    )
    return written(container, outcome)


@router.post("/{invoice_id}/mark-uncollectible", response_model=InvoiceWritten)
def mark_invoice_uncollectible(
    invoice_id: UUID,
    request: Request,
    ledger: LedgerDep,
    container: ContainerDep,
    principal: AdminKey,
    body: Annotated[InvoiceTransition | None, Body()] = None,
) -> dict[str, Any]:
    body = body or InvoiceTransition()
    outcome = ledger.mark_invoice_uncollectible(
        c.MarkInvoiceUncollectible(invoice_id), command_context(request, principal, body, body.effective_at)
    )
    return written(container, outcome)


@router.get("", response_model=ListOf[InvoiceOut])
def list_invoices(
    conn: ReadConn,
    customer_id: UUID | None = None,
    status_: StatusFilter = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    page = queries.list_invoices(conn, customer_id=customer_id, status=status_, cursor=cursor, limit=limit)
    return {"data": page.items, "next_cursor": page.next_cursor}


@router.get("/{invoice_id}", response_model=InvoiceOut)
def get_invoice(invoice_id: UUID, conn: ReadConn) -> dict[str, Any]:
    row = queries.get_invoice(conn, invoice_id)
    if row is None:
        raise NotFound(f"no invoice with id {invoice_id}")
    return row
