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
    CreditNoteIssue,
    CreditNoteWritten,
    InvoiceDraft,
    InvoiceFinalize,
    InvoiceOut,
    InvoiceTransition,
    InvoiceWritten,
    LineSourcesOut,
)
from application import commands as c
from domain.errors import NotFound
from infra.event_log import usage_line_sources
from projections import queries

router = APIRouter(route_class=LedgerRoute, prefix="/v1/invoices", tags=["invoices"])
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


@router.post(
    "/{invoice_id}/credit-notes", status_code=status.HTTP_201_CREATED, response_model=CreditNoteWritten
)
def issue_credit_note(
    invoice_id: UUID,
    body: CreditNoteIssue,
    request: Request,
    ledger: LedgerDep,
    container: ContainerDep,
    principal: AdminKey,
) -> dict[str, Any]:
    """A credit note on an open or paid invoice, for an `amount` or for `lines` ({line_id,
    amount}). It lowers what remains to pay; beyond that (money paid) it is refunded
    (`refund_amount`) and/or credited to the customer's balance (`credit_amount`; all credit when
    neither is given). Credit notes never exceed the invoice's total. Numbered CN-000001, gapless."""
    cmd = c.IssueCreditNote(
        invoice_id=invoice_id,
        reason=body.reason,
        amount=body.amount,
        lines=[{"line_id": str(line.line_id), "amount": line.amount} for line in body.lines]
        if body.lines is not None
        else None,
        refund_amount=body.refund_amount,
        credit_amount=body.credit_amount,
        memo=body.memo,
    )
    outcome = ledger.issue_credit_note(cmd, command_context(request, principal, body, body.effective_at))
    return written(container, outcome)


@router.get("/{invoice_id}/lines/{line_id}/sources", response_model=LineSourcesOut)
def get_line_sources(invoice_id: UUID, line_id: UUID, conn: ReadConn) -> dict[str, Any]:
    """The usage records behind a usage line (or an adjustment line): the customer's records of the
    line's metric in its period, as the log stood when the line was rated, with their values then.
    Their sorted ids hash to the line's `records_digest`."""
    invoice = queries.get_invoice(conn, invoice_id)
    if invoice is None:
        raise NotFound(f"no invoice with id {invoice_id}")
    line = next((item for item in invoice["lines"] if item.get("line_id") == str(line_id)), None)
    if line is None:
        raise NotFound(f"invoice {invoice_id} has no line {line_id}")
    source = line.get("source") or {}
    if not line.get("metric") or "as_of_position" not in source:
        return {
            "invoice_id": invoice_id,
            "line_id": line_id,
            "records": 0,
            "records_digest": None,
            "data": [],
        }
    records = usage_line_sources(
        conn,
        customer_id=invoice["customer_id"],
        metric=line["metric"],
        start=datetime.fromisoformat(line["period_start"]),
        end=datetime.fromisoformat(line["period_end"]),
        as_of=int(source["as_of_position"]),
    )
    return {
        "invoice_id": invoice_id,
        "line_id": line_id,
        "records": len(records),
        "records_digest": source.get("records_digest"),
        "data": records,
    }
