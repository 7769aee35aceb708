"""Credit notes (SPEC 7): issued on an invoice (POST /v1/invoices/{id}/credit-notes), read here."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query

from api.deps import ReadConn
from api.routing import LedgerRoute
from api.schemas.common import ListOf
from api.schemas.resources import CreditNoteOut
from domain.errors import NotFound
from projections import queries

router = APIRouter(route_class=LedgerRoute, prefix="/v1/credit-notes", tags=["credit notes"])


@router.get("", response_model=ListOf[CreditNoteOut])
def list_credit_notes(
    conn: ReadConn,
    customer_id: UUID | None = None,
    invoice_id: UUID | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    page = queries.list_credit_notes(
        conn, customer_id=customer_id, invoice_id=invoice_id, cursor=cursor, limit=limit
    )
    return {"data": page.items, "next_cursor": page.next_cursor}


@router.get("/{credit_note_id}", response_model=CreditNoteOut)
def get_credit_note(credit_note_id: UUID, conn: ReadConn) -> dict[str, Any]:
    row = queries.get_credit_note(conn, credit_note_id)
    if row is None:
        raise NotFound(f"no credit note with id {credit_note_id}")
    return row
