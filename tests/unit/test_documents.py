"""Invoice and credit-note documents (SPEC 8, "Documents") as pure functions: read-model rows in,
PDF bytes and HTML out. The PDF's text is read back with pypdf, as a person's PDF reader would."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from typing import Any

import pytest
from pypdf import PdfReader

from infra.documents.render import render_html, render_pdf
from infra.documents.views import (
    buyer_party,
    credit_note_document,
    credit_note_tax,
    format_amount,
    format_period,
    format_unit_price,
    invoice_document,
    seller_party,
)

SELLER = seller_party(
    "Société Exemple SàRL", "12 rue de l'Église; 75001 Paris; France", "FR40123456789", "billing@exemple.fr"
)
BUYER = buyer_party(
    {
        "name": "Łódź Widgets sp. z o.o.",
        "email": "ap@widgets.pl",
        "vat_id": "PL5260001246",
        "address": {"line1": "ul. Piotrkowska 1", "postal_code": "90-001", "city": "Łódź", "country": "PL"},
    }
)


def an_invoice(**changes: Any) -> dict[str, Any]:
    invoice: dict[str, Any] = {
        "id": "0b4c7f1e-6f1b-4d59-9a43-f0f1b1f5b001",
        "number": "INV-000042",
        "status": "open",
        "currency": "EUR",
        "created_at": datetime(2025, 3, 1, 0, 0, tzinfo=UTC),
        "finalized_at": datetime(2025, 3, 1, 1, 0, tzinfo=UTC),
        "due_date": date(2025, 3, 15),
        "period_start": datetime(2025, 3, 1, tzinfo=UTC),
        "period_end": datetime(2025, 4, 1, tzinfo=UTC),
        "lines": [
            {
                "line_id": "l-fee",
                "kind": "fee",
                "description": "Pro × 2",
                "quantity": "2",
                "unit_amount": "50000",
                "amount": 100000,
                "period_start": "2025-03-01T00:00:00+00:00",
                "period_end": "2025-04-01T00:00:00+00:00",
            },
            {
                "line_id": "l-usage",
                "kind": "usage",
                "description": "api_calls",
                "quantity": "65000",
                "unit_amount": "0.06",
                "amount": 3900,
                "period_start": "2025-02-01T00:00:00+00:00",
                "period_end": "2025-03-01T00:00:00+00:00",
            },
        ],
        "subtotal": 103900,
        "discount": 3900,
        "tax": 20000,
        "total": 120000,
        "tax_rate_bps": 2000,
        "tax_exempt": "none",
        "coupon": {"coupon": "LAUNCH", "amount_off": 3900, "currency": "EUR"},
        "balance_applied": 0,
    }
    return {**invoice, **changes}


def pdf_text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (123456, "EUR", "1,234.56 EUR"),
        (-500, "EUR", "-5.00 EUR"),
        (1234, "JPY", "1,234 JPY"),
        (1234, "KWD", "1.234 KWD"),
        (5, "EUR", "0.05 EUR"),
    ],
)
def test_amounts_are_written_with_the_currencys_iso_4217_exponent(
    minor: int, currency: str, text: str
) -> None:
    assert format_amount(minor, currency) == text


def test_a_sub_cent_unit_price_is_written_exactly() -> None:
    assert format_unit_price("0.06", "EUR") == "0.0006 EUR"
    assert format_unit_price(50000, "EUR") == "500.00 EUR"
    assert format_unit_price("7", "JPY") == "7 JPY"


def test_a_period_ending_at_midnight_ends_on_the_day_before() -> None:
    assert (
        format_period("2025-03-01T00:00:00+00:00", "2025-04-01T00:00:00+00:00") == "2025-03-01 – 2025-03-31"
    )


def test_an_invoice_pdf_carries_what_article_226_asks() -> None:
    text = pdf_text(render_pdf(invoice_document(an_invoice(), BUYER, SELLER)))
    for expected in (
        "INV-000042",
        "Issue date 2025-03-01",
        "Due date 2025-03-15",
        "Service period 2025-03-01 – 2025-03-31",
        "Société Exemple SàRL",
        "12 rue de l'Église",
        "VAT ID: FR40123456789",
        "Łódź Widgets sp. z o.o.",
        "90-001 Łódź",
        "VAT ID: PL5260001246",
        "Pro × 2",
        "500.00 EUR",  # unit price, net
        "1,000.00 EUR",  # the line's amount
        "65,000",
        "0.0006 EUR",
        "Discount (LAUNCH) -39.00 EUR",
        "VAT 20% 1,000.00 EUR 200.00 EUR",  # tax breakdown: rate, taxable amount, tax
        "Total 1,200.00 EUR",
    ):
        assert expected in text, expected
    assert "Reverse charge" not in text


def test_rendering_the_same_invoice_twice_gives_the_same_bytes() -> None:
    first = render_pdf(invoice_document(an_invoice(), BUYER, SELLER))
    second = render_pdf(invoice_document(an_invoice(), BUYER, SELLER))
    assert first == second
    assert render_html(invoice_document(an_invoice(), BUYER, SELLER)) == render_html(
        invoice_document(an_invoice(), BUYER, SELLER)
    )
    # The creation date in the file is the issue moment, not the clock's.
    assert PdfReader(io.BytesIO(first)).metadata.creation_date == datetime(2025, 3, 1, 1, 0, tzinfo=UTC)


def test_a_reverse_charge_invoice_says_so_and_charges_no_tax() -> None:
    invoice = an_invoice(tax=0, total=100000, tax_exempt="reverse")
    text = pdf_text(render_pdf(invoice_document(invoice, BUYER, SELLER)))
    assert "Reverse charge" in text
    assert "VAT 0% (reverse charge) 1,000.00 EUR 0.00 EUR" in text
    assert "Reverse charge" in render_html(invoice_document(invoice, BUYER, SELLER))


def test_a_void_invoice_is_marked_void() -> None:
    assert "VOID" in pdf_text(render_pdf(invoice_document(an_invoice(status="void"), BUYER, SELLER)))


def test_a_credit_note_names_the_invoice_it_corrects_and_its_tax_share() -> None:
    note = {
        "number": "CN-000007",
        "invoice_id": "0b4c7f1e-6f1b-4d59-9a43-f0f1b1f5b001",
        "currency": "EUR",
        "reason": "order_change",
        "amount": 24000,
        "lines": [],
        "against_remaining": 24000,
        "refund_amount": 0,
        "credit_amount": 0,
        "memo": "One seat less",
        "created_at": datetime(2025, 3, 5, 9, 30, tzinfo=UTC),
    }
    document = credit_note_document(note, an_invoice(), BUYER, SELLER)
    text = pdf_text(render_pdf(document))
    assert "CN-000007" in text
    assert "Corrects invoice INV-000042 of 2025-03-01" in text
    # 240.00 EUR tax included: 20,000 / 120,000 of it is the invoice's tax, 40.00 EUR.
    assert credit_note_tax(24000, 20000, 120000) == 4000
    assert "VAT 20% 200.00 EUR 40.00 EUR" in text
    assert "Total credited 240.00 EUR" in text
    assert "VAT ID: PL5260001246" in text and "VAT ID: FR40123456789" in text
    assert "One seat less" in text
    assert render_pdf(document) == render_pdf(credit_note_document(note, an_invoice(), BUYER, SELLER))


def test_html_escapes_what_clients_wrote() -> None:
    buyer = buyer_party({"name": "<script>alert(1)</script> & Co", "vat_id": None, "address": None})
    html = render_html(invoice_document(an_invoice(), buyer, SELLER))
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in html


def test_a_yen_invoice_has_no_decimals() -> None:
    invoice = an_invoice(
        currency="JPY",
        lines=[{"description": "Plan", "quantity": 1, "unit_amount": 12000, "amount": 12000}],
        subtotal=12000,
        discount=0,
        tax=1200,
        total=13200,
        tax_rate_bps=1000,
        coupon=None,
        period_start=None,
        period_end=None,
    )
    text = pdf_text(render_pdf(invoice_document(invoice, BUYER, SELLER)))
    assert "Total 13,200 JPY" in text
    assert "VAT 10% 12,000 JPY 1,200 JPY" in text
    assert "Service period" not in text  # no period anywhere: the supply date is the issue date
