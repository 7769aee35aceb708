"""Invoice and credit-note documents (SPEC 8, "Documents"): PDF and HTML, rendered from the read
models, byte-identical for the same document. A draft invoice has no document (409
`invoice_not_finalized`): it has no number yet and its lines may still change."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from api.deps import ContainerDep, ReadConn
from api.routing import LedgerRoute
from infra.documents.views import Document
from projections.documents import load_credit_note_document, load_invoice_document, seller_party

router = APIRouter(route_class=LedgerRoute, tags=["documents"])

PDF = "application/pdf"
HTML = "text/html"
NOT_FINALIZED: dict[int | str, dict[str, Any]] = {
    409: {"description": "The invoice is a draft: it has no document until it is finalized"}
}


# The renderer (fpdf2, Jinja) is imported on the first document asked: an API process that never
# serves one does not hold it.


def _pdf(document: Document) -> Response:
    from infra.documents.render import render_pdf

    return Response(
        render_pdf(document),
        media_type=PDF,
        headers={"Content-Disposition": f'inline; filename="{document.file_name}"'},
    )


def _html(document: Document) -> HTMLResponse:
    from infra.documents.render import render_html

    return HTMLResponse(render_html(document))


@router.get(
    "/v1/invoices/{invoice_id}/pdf",
    response_class=Response,
    responses={200: {"content": {PDF: {}}, "description": "The invoice as PDF"}, **NOT_FINALIZED},
)
def invoice_pdf(invoice_id: UUID, conn: ReadConn, container: ContainerDep) -> Response:
    """The invoice as a PDF carrying what EU Directive 2006/112/EC art. 226 asks."""
    return _pdf(load_invoice_document(conn, invoice_id, seller_party(container.settings)))


@router.get(
    "/v1/invoices/{invoice_id}/html",
    response_class=HTMLResponse,
    responses={200: {"content": {HTML: {}}, "description": "The invoice as HTML"}, **NOT_FINALIZED},
)
def invoice_html(invoice_id: UUID, conn: ReadConn, container: ContainerDep) -> HTMLResponse:
    """The invoice as one self-contained HTML page (the PDF's content)."""
    return _html(load_invoice_document(conn, invoice_id, seller_party(container.settings)))


@router.get(
    "/v1/credit-notes/{credit_note_id}/pdf",
    response_class=Response,
    responses={200: {"content": {PDF: {}}, "description": "The credit note as PDF"}},
)
def credit_note_pdf(credit_note_id: UUID, conn: ReadConn, container: ContainerDep) -> Response:
    """The credit note as a PDF; it names the invoice it corrects."""
    return _pdf(load_credit_note_document(conn, credit_note_id, seller_party(container.settings)))


@router.get(
    "/v1/credit-notes/{credit_note_id}/html",
    response_class=HTMLResponse,
    responses={200: {"content": {HTML: {}}, "description": "The credit note as HTML"}},
)
def credit_note_html(credit_note_id: UUID, conn: ReadConn, container: ContainerDep) -> HTMLResponse:
    return _html(load_credit_note_document(conn, credit_note_id, seller_party(container.settings)))
