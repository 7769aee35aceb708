"""Invoice and credit-note documents through the API (SPEC 8, "Documents"): the PDF a client
downloads carries the art. 226 fields (read back with pypdf), the same bytes every time, the
buyer as it was when the invoice was issued; a draft has no document; refusals are problems."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from pypdf import PdfReader

from tests.conftest import bearer
from tests.integration.conftest import Clocked

ADDRESS = {"line1": "Hauptstraße 5", "postal_code": "10115", "city": "Berlin", "country": "DE"}


def pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def customer(api: Clocked, external_id: str = "müller", **fields: Any) -> str:
    body = {
        "external_id": external_id,
        "email": f"{external_id}@example.org".replace("ü", "ue"),
        "name": "Müller & Söhne GmbH",
        "currency": "EUR",
        "tax_rate_bps": 1900,
        "vat_id": "DE136695976",
        "address": ADDRESS,
        **fields,
    }
    return str(api.post("/v1/customers", body)["id"])


def finalized_invoice(api: Clocked, customer_id: str) -> dict[str, Any]:
    draft = api.post(
        "/v1/invoices",
        {
            "customer_id": customer_id,
            "currency": "EUR",
            "lines": [
                {"description": "Consulting (day rate)", "quantity": 3, "unit_amount": 95000},
                {"description": "Travel costs", "quantity": 1, "unit_amount": 12050},
            ],
        },
    )
    due = (api.now + timedelta(days=14)).date().isoformat()
    return api.post(f"/v1/invoices/{draft['id']}/finalize", {"due_date": due})


def download(api: Clocked, path: str, headers: dict[str, str] | None = None) -> Any:
    return api.client.get(path, params={"min_position": api.position}, headers=headers or api.admin)


def test_a_finalized_invoice_pdf_carries_both_parties_the_tax_per_rate_and_the_totals(
    clocked: Clocked,
) -> None:
    invoice = finalized_invoice(clocked, customer(clocked))
    response = download(clocked, f"/v1/invoices/{invoice['id']}/pdf")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"] == f'inline; filename="{invoice["number"]}.pdf"'
    text = pdf_text(response.content)
    for expected in (
        invoice["number"],
        "Billing Ledger",  # the seller's name, LEDGER_SELLER_NAME's default
        "Müller & Söhne GmbH",
        "Hauptstraße 5",
        "10115 Berlin",
        "VAT ID: DE136695976",
        "Consulting (day rate)",
        "950.00 EUR",
        "2,850.00 EUR",
        "Subtotal (net) 2,970.50 EUR",
        "VAT 19% 2,970.50 EUR 564.40 EUR",
        "Total 3,534.90 EUR",
    ):
        assert expected in text, expected
    again = download(clocked, f"/v1/invoices/{invoice['id']}/pdf")
    assert again.content == response.content
    html = download(clocked, f"/v1/invoices/{invoice['id']}/html")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "Müller &amp; Söhne GmbH" in html.text and "564.40 EUR" in html.text


def test_the_seller_comes_from_the_settings(clocked: Clocked) -> None:
    settings = clocked.container.settings
    clocked.container.settings = settings.model_copy(
        update={
            "seller_name": "Acme Cloud B.V.",
            "seller_address": "Keizersgracht 1; 1015 CJ Amsterdam; NL",
            "seller_vat_id": "NL123456789B01",
        }
    )
    try:
        invoice = finalized_invoice(clocked, customer(clocked))
        text = pdf_text(download(clocked, f"/v1/invoices/{invoice['id']}/pdf").content)
    finally:
        clocked.container.settings = settings
    assert "Acme Cloud B.V." in text and "1015 CJ Amsterdam" in text
    assert "VAT ID: NL123456789B01" in text and "VAT ID: DE136695976" in text


def test_an_invoice_keeps_the_buyer_it_was_issued_to(clocked: Clocked) -> None:
    customer_id = customer(clocked)
    invoice = finalized_invoice(clocked, customer_id)
    before = download(clocked, f"/v1/invoices/{invoice['id']}/pdf").content
    response = clocked.client.patch(
        f"/v1/customers/{customer_id}",
        json={"address": {"line1": "Neue Allee 9", "city": "Hamburg", "country": "DE"}},
        headers=clocked.admin,
    )
    assert response.status_code == 200, response.text
    clocked.position = response.json()["position"]
    after = download(clocked, f"/v1/invoices/{invoice['id']}/pdf").content
    assert after == before
    assert "Hauptstraße 5" in pdf_text(after) and "Neue Allee" not in pdf_text(after)
    # The next invoice goes to the new address.
    later = finalized_invoice(clocked, customer_id)
    assert "Neue Allee 9" in pdf_text(download(clocked, f"/v1/invoices/{later['id']}/pdf").content)


def test_a_reverse_charge_customers_invoice_says_reverse_charge(clocked: Clocked) -> None:
    clocked.post(
        "/v1/plans", {"code": "pro", "name": "Pro", "currency": "EUR", "amount": 4900, "interval": "month"}
    )
    customer_id = customer(clocked, "dutch", tax_exempt="reverse", vat_id="NL859048290B01")
    clocked.post("/v1/subscriptions", {"customer_id": customer_id, "plan_code": "pro"})
    clocked.advance(clocked.now + timedelta(minutes=61))  # the grace hour: the invoice is finalized
    (invoice,) = clocked.get("/v1/invoices", customer_id=customer_id)["data"]
    assert invoice["status"] == "open"
    text = pdf_text(download(clocked, f"/v1/invoices/{invoice['id']}/pdf").content)
    assert "Reverse charge" in text
    assert "VAT 0% (reverse charge) 49.00 EUR 0.00 EUR" in text
    assert "VAT ID: NL859048290B01" in text
    assert "Service period" in text


def test_a_credit_note_document_names_the_invoice_it_corrects(clocked: Clocked) -> None:
    invoice = finalized_invoice(clocked, customer(clocked))
    note = clocked.post(
        f"/v1/invoices/{invoice['id']}/credit-notes", {"reason": "order_change", "amount": 119000}
    )
    response = download(clocked, f"/v1/credit-notes/{note['id']}/pdf")
    assert response.status_code == 200, response.text
    text = pdf_text(response.content)
    assert note["number"] in text
    assert f"Corrects invoice {invoice['number']} of {invoice['finalized_at'][:10]}" in text
    assert "VAT 19% 1,000.00 EUR 190.00 EUR" in text and "Total credited 1,190.00 EUR" in text
    assert download(clocked, f"/v1/credit-notes/{note['id']}/pdf").content == response.content
    html = download(clocked, f"/v1/credit-notes/{note['id']}/html")
    assert html.status_code == 200 and invoice["number"] in html.text


def test_a_draft_has_no_document_and_an_unknown_id_is_not_found(clocked: Clocked) -> None:
    customer_id = customer(clocked)
    draft = clocked.post(
        "/v1/invoices",
        {
            "customer_id": customer_id,
            "currency": "EUR",
            "lines": [{"description": "x", "quantity": 1, "unit_amount": 1}],
        },
    )
    for form in ("pdf", "html"):
        refused = download(clocked, f"/v1/invoices/{draft['id']}/{form}")
        assert refused.status_code == 409
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"].endswith("invoice_not_finalized")
    unknown = "00000000-0000-4000-8000-000000000000"
    for path in (f"/v1/invoices/{unknown}/pdf", f"/v1/credit-notes/{unknown}/html"):
        missing = download(clocked, path)
        assert missing.status_code == 404 and missing.json()["type"].endswith("not_found")
    assert download(clocked, "/v1/invoices/not-a-uuid/pdf").status_code == 422


def test_a_read_key_downloads_documents_and_no_key_gets_nothing(clocked: Clocked) -> None:
    invoice = finalized_invoice(clocked, customer(clocked))
    _, read = clocked.container.keys.mint(role="read", name="finance")
    assert download(clocked, f"/v1/invoices/{invoice['id']}/pdf", bearer(read)).status_code == 200
    client: TestClient = clocked.client
    assert client.get(f"/v1/invoices/{invoice['id']}/pdf").status_code == 401
