"""The e-mails the ledger sends (SPEC 8, "E-mail"), as its outbox records them."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query

from api.deps import ReadConn
from api.routing import LedgerRoute
from api.schemas.common import ListOf
from api.schemas.emails import EmailKind, EmailOut, EmailStatus
from projections.mail_outbox import list_emails as outbox_emails

router = APIRouter(route_class=LedgerRoute, prefix="/v1/emails", tags=["emails"])


@router.get("", response_model=ListOf[EmailOut])
def list_emails(
    conn: ReadConn,
    customer_id: UUID | None = None,
    subject_id: Annotated[UUID | None, Query(description="an invoice, payment or credit note")] = None,
    kind: EmailKind | None = None,
    status: EmailStatus | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """The messages the log called for, oldest first: sent (with their Message-ID), pending
    (queued, or retried after a failure: `last_error`) or skipped (`note` says why)."""
    page = outbox_emails(
        conn,
        customer_id=customer_id,
        kind=kind,
        status=status,
        subject_id=subject_id,
        cursor=cursor,
        limit=limit,
    )
    return {"data": page.items, "next_cursor": page.next_cursor}
