"""A document (views.Document) as PDF bytes (fpdf2) or HTML text (Jinja2): pure functions of the
view, byte-identical for the same view. Nothing varies between two renderings: the PDF's
creation date is the document's issue moment, its file id a hash of its content (fpdf2's
default), and the embedded font (DejaVu Sans, shipped in `fonts/` under its Bitstream Vera
licence, subset by fpdf2) covers what the core PDF fonts cannot encode (€, Ł, ő, Cyrillic, Greek)."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import Align, TableBordersLayout, XPos, YPos
from fpdf.fonts import FontFace
from jinja2 import Environment, PackageLoader

from infra.documents.views import Document, Party

FONT = "DejaVu"
PAGE_MARGIN = 16.0
LINE_WIDTHS = (86.0, 22.0, 34.0, 36.0)  # description, quantity, unit price, amount (mm; 178 in all)
TAX_WIDTHS = (62.0, 40.0, 36.0)
MUTED = (90, 90, 90)
BLACK = (0, 0, 0)
ALERT = (176, 0, 32)
HEADINGS = FontFace(family=FONT, emphasis="BOLD", size_pt=8, color=MUTED)


@cache
def _font_dir() -> Path:
    return Path(str(resources.files("infra.documents") / "fonts"))


def _party(pdf: FPDF, heading: str, party: Party, x: float, y: float, width: float) -> float:
    """A party's block at (x, y); answers where it ends."""
    pdf.set_xy(x, y)
    pdf.set_font(FONT, "B", 8)
    pdf.set_text_color(*MUTED)
    pdf.cell(width, 5, heading.upper(), new_x=XPos.LEFT, new_y=YPos.NEXT)
    pdf.set_text_color(*BLACK)
    pdf.set_font(FONT, "B", 10)
    pdf.set_x(x)
    pdf.multi_cell(width, 5, party.name, new_x=XPos.LEFT, new_y=YPos.NEXT)
    pdf.set_font(FONT, "", 9)
    for line in party.address_lines:
        pdf.set_x(x)
        pdf.multi_cell(width, 4.5, line, new_x=XPos.LEFT, new_y=YPos.NEXT)
    pdf.set_x(x)
    pdf.multi_cell(width, 4.5, f"VAT ID: {party.vat_id or '—'}", new_x=XPos.LEFT, new_y=YPos.NEXT)
    if party.email:
        pdf.set_x(x)
        pdf.multi_cell(width, 4.5, party.email, new_x=XPos.LEFT, new_y=YPos.NEXT)
    return pdf.get_y()


def render_pdf(document: Document) -> bytes:
    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_creation_date(document.issued_at)
    pdf.set_title(f"{document.title} {document.number}")
    pdf.set_author(document.seller.name)
    pdf.set_subject(f"{document.title} {document.number} for {document.buyer.name}")
    pdf.set_lang("en")
    pdf.set_margins(PAGE_MARGIN, PAGE_MARGIN, PAGE_MARGIN)
    pdf.set_auto_page_break(auto=True, margin=PAGE_MARGIN)
    fonts = _font_dir()
    pdf.add_font(FONT, "", str(fonts / "DejaVuSans.ttf"))
    pdf.add_font(FONT, "B", str(fonts / "DejaVuSans-Bold.ttf"))
    pdf.add_page()
    width = pdf.epw

    # Title and the document's facts (number, dates, period, what it corrects).
    pdf.set_font(FONT, "B", 20)
    pdf.cell(width / 2, 10, document.title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    top = pdf.get_y()
    if document.banner:
        pdf.set_font(FONT, "B", 10)
        pdf.set_text_color(*ALERT)
        pdf.multi_cell(width / 2 - 4, 5, document.banner, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_text_color(*BLACK)
    facts_x, facts_y = PAGE_MARGIN + width / 2, PAGE_MARGIN
    for label, value in document.facts:
        pdf.set_xy(facts_x, facts_y)
        pdf.set_font(FONT, "", 8)
        pdf.set_text_color(*MUTED)
        pdf.cell(34, 5, label)
        pdf.set_text_color(*BLACK)
        pdf.set_font(FONT, "B", 9)
        pdf.multi_cell(width / 2 - 34, 5, value, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        facts_y = pdf.get_y()

    # Seller and buyer, side by side.
    parties_y = max(top, facts_y, pdf.get_y()) + 6
    half = width / 2 - 4
    seller_end = _party(pdf, "From", document.seller, PAGE_MARGIN, parties_y, half)
    buyer_end = _party(pdf, "Bill to", document.buyer, PAGE_MARGIN + width / 2, parties_y, half)
    pdf.set_xy(PAGE_MARGIN, max(seller_end, buyer_end) + 8)

    # The lines.
    pdf.set_font(FONT, "", 9)
    with pdf.table(
        col_widths=LINE_WIDTHS,
        width=sum(LINE_WIDTHS),
        text_align=(Align.L, Align.R, Align.R, Align.R),
        borders_layout=TableBordersLayout.HORIZONTAL_LINES,
        line_height=5,
        padding=1.2,
        first_row_as_headings=True,
        headings_style=HEADINGS,
    ) as table:
        header = table.row()
        for heading in document.line_headers:
            header.cell(heading)
        for line in document.lines:
            row = table.row()
            row.cell(f"{line.description}\n{line.period}" if line.period else line.description)
            row.cell(line.quantity)
            row.cell(line.unit_price)
            row.cell(line.amount)

    # Totals, tax per rate among them.
    pdf.ln(4)
    label_width, amount_width = 62.0, 36.0
    for total in document.totals:
        pdf.set_x(PAGE_MARGIN + width - label_width - amount_width)
        pdf.set_font(FONT, "B" if total.strong else "", 10 if total.strong else 9)
        pdf.cell(label_width, 6, total.label, align=Align.L)
        pdf.cell(amount_width, 6, total.amount, align=Align.R, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    # The tax breakdown, as art. 226 (9)-(10) asks: rate, taxable amount and tax, per rate.
    pdf.ln(4)
    pdf.set_font(FONT, "", 9)
    with pdf.table(
        col_widths=TAX_WIDTHS,
        width=sum(TAX_WIDTHS),
        align=Align.L,
        text_align=(Align.L, Align.R, Align.R),
        borders_layout=TableBordersLayout.HORIZONTAL_LINES,
        line_height=5,
        padding=1.2,
        headings_style=HEADINGS,
    ) as taxes:
        header = taxes.row()
        for heading in ("Tax rate", "Taxable amount", "Tax"):
            header.cell(heading)
        for tax in document.taxes:
            row = taxes.row()
            row.cell(tax.label)
            row.cell(tax.base)
            row.cell(tax.amount)

    if document.notes:
        pdf.ln(4)
        pdf.set_font(FONT, "", 9)
        for note in document.notes:
            pdf.multi_cell(width, 5, note, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    return bytes(pdf.output())


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("infra.documents", "templates"),
        autoescape=True,  # every value is escaped: names and addresses come from API clients
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_html(document: Document) -> str:
    """The same document as one self-contained HTML page (inline CSS, nothing fetched)."""
    return _environment().get_template("document.html.j2").render(doc=document)
