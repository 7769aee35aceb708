"""Documents from the read models: the rows an invoice or a credit note shows, as the view the
renderers lay out (infra.documents). Shared by the API and the mailer, so both give the same
bytes. Reads rows only (the read side never loads aggregates)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg import Connection

from domain.errors import InvoiceNotFinalized, NotFound
from infra.documents.views import Document, Party, buyer_party, credit_note_document, invoice_document
from infra.documents.views import seller_party as _seller_party
from infra.settings import Settings
from projections import queries


def seller_party(settings: Settings) -> Party:
    return _seller_party(
        settings.seller_name, settings.seller_address, settings.seller_vat_id, settings.seller_email
    )


def _buyer(conn: Connection[Any], row: dict[str, Any]) -> Party:
    """The buyer as the document was issued to (its snapshot), else the customer as it is."""
    snapshot = row.get("buyer")
    if snapshot:
        return buyer_party(snapshot)
    customer = queries.get_customer_row(conn, row["customer_id"])
    return buyer_party(customer or {"name": str(row["customer_id"])})


def load_invoice_document(conn: Connection[Any], invoice_id: UUID, seller: Party) -> Document:
    """NotFound (404) for an unknown invoice; InvoiceNotFinalized (409) for a draft, which has
    no number yet and may still change."""
    invoice = queries.get_invoice(conn, invoice_id)
    if invoice is None:
        raise NotFound(f"no invoice with id {invoice_id}")
    if invoice["status"] == "draft" or not invoice["number"]:
        raise InvoiceNotFinalized(
            f"invoice {invoice_id} is a draft: its document exists once it is finalized"
        )
    return invoice_document(invoice, _buyer(conn, invoice), seller)


def load_credit_note_document(conn: Connection[Any], credit_note_id: UUID, seller: Party) -> Document:
    note = queries.get_credit_note(conn, credit_note_id)
    if note is None:
        raise NotFound(f"no credit note with id {credit_note_id}")
    invoice = queries.get_invoice(conn, note["invoice_id"])
    if invoice is None:  # a credit note is issued on an invoice the same projector wrote first
        raise NotFound(f"the invoice {note['invoice_id']} of credit note {credit_note_id} is not known")
    return credit_note_document(note, invoice, _buyer(conn, note), seller)
