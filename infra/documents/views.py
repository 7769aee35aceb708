"""What an invoice or a credit note shows (EU Directive 2006/112/EC art. 226), built from the
read models' rows: pure functions, no I/O. The renderers (render.py) only lay these out, so the
PDF and the HTML of a document say the same thing, and the same rows always give the same view.

What art. 226 asks, and where it is:
- issue date and number: `facts`; the PDF's creation date is the issue moment (no clock read);
- seller name, address and VAT id (settings `LEDGER_SELLER_*`): `seller`;
- buyer name, address and VAT id, as the customer was when the invoice was finalized (the read
  model keeps that snapshot; the current customer for older rows): `buyer`;
- date of supply, the service period: `facts`, and each line's period;
- each line's quantity, unit price net of tax and amount: `lines`;
- discounts: `totals` (the coupon named); tax rate, taxable amount and tax per rate: `taxes`;
- totals; "Reverse charge" (customer `tax_exempt` = reverse) or the exemption: `notes`;
- a credit note names the invoice it corrects (number and issue date): `facts`.

Amounts are integer minor units, written with the currency's ISO 4217 exponent (JPY 0, EUR 2,
KWD 3). Invoice lines are net of tax. A credit note's amount is what it takes off the invoice's
total, tax included (as the ledger books it); its tax share is amount × invoice tax ÷ invoice
total, rounded half-even once (`credit_note_tax`), the rest is its net amount."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from domain.billing import REVERSE_CHARGE_NOTE
from domain.money import divide_half_even, exponent

REVERSE_CHARGE_TEXT = (
    f"{REVERSE_CHARGE_NOTE}: VAT is to be accounted for by the recipient"
    " (Article 196, Council Directive 2006/112/EC)."
)
EXEMPT_TEXT = "Exempt from VAT: no VAT is charged on this invoice."
ADDRESS_SEPARATOR = ";"


@dataclass(frozen=True)
class Party:
    name: str
    address_lines: tuple[str, ...] = ()
    vat_id: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class Line:
    description: str
    period: str | None
    quantity: str
    unit_price: str
    amount: str


@dataclass(frozen=True)
class TaxRow:
    label: str  # "VAT 20%", "VAT 0% (reverse charge)", "VAT exempt"
    base: str  # the taxable amount at that rate
    amount: str


@dataclass(frozen=True)
class Total:
    label: str
    amount: str
    strong: bool = False


@dataclass(frozen=True)
class Document:
    kind: str  # invoice | credit_note
    title: str
    number: str
    issued_at: datetime  # the PDF's creation date: fixed by the document, never the clock
    facts: tuple[tuple[str, str], ...]
    seller: Party
    buyer: Party
    currency: str
    line_headers: tuple[str, str, str, str]
    lines: tuple[Line, ...]
    taxes: tuple[TaxRow, ...]
    totals: tuple[Total, ...]
    notes: tuple[str, ...] = ()
    banner: str | None = None  # VOID: shown across the top

    @property
    def file_name(self) -> str:
        return f"{self.number}.pdf"


# ---------------------------------------------------------------------------- formatting


def _grouped(units: int) -> str:
    return f"{units:,}"


def format_amount(minor: int, currency: str) -> str:
    """Minor units in the currency's ISO 4217 exponent: 123456 EUR → "1,234.56 EUR", JPY 1234 →
    "1,234 JPY", KWD 1234 → "1.234 KWD"."""
    exp = exponent(currency)
    sign = "-" if minor < 0 else ""
    units, fraction = divmod(abs(minor), 10**exp)
    digits = f".{fraction:0{exp}d}" if exp else ""
    return f"{sign}{_grouped(units)}{digits} {currency}"


def format_unit_price(minor: int | str | Decimal | None, currency: str) -> str:
    """A unit price in minor units, exact (a usage price may be a fraction of a cent: 0.06 cents
    is "0.0006 EUR"), with at least the currency's exponent of decimals."""
    if minor is None or minor == "":
        return ""
    exp = exponent(currency)
    value = Decimal(str(minor)).scaleb(-exp)
    text = format(value.normalize(), "f")
    whole, _, decimals = text.partition(".")
    decimals = decimals.ljust(exp, "0")
    sign = "-" if whole.startswith("-") else ""
    whole = _grouped(int(whole.lstrip("-") or "0"))
    return f"{sign}{whole}{'.' + decimals if decimals else ''} {currency}"


def format_quantity(quantity: int | str | Decimal | None) -> str:
    if quantity is None or quantity == "":
        return ""
    value = Decimal(str(quantity))
    whole, _, decimals = format(value.normalize(), "f").partition(".")
    sign = "-" if whole.startswith("-") else ""
    grouped = _grouped(int(whole.lstrip("-") or "0"))
    return f"{sign}{grouped}{'.' + decimals if decimals else ''}"


def format_rate(tax_rate_bps: int) -> str:
    """Basis points as a percentage: 2000 → "20%", 750 → "7.5%"."""
    return f"{format(Decimal(tax_rate_bps).scaleb(-2).normalize(), 'f')}%"


def _moment(value: datetime | str | None) -> datetime | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _required_moment(value: datetime | str) -> datetime:
    found = _moment(value)
    if found is None:
        raise ValueError("a document needs the moment it was issued")
    return found


def _day(value: date | datetime | str | None) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return date.fromisoformat(str(value)[:10]).isoformat()


def format_period(start: datetime | str | None, end: datetime | str | None) -> str | None:
    """A period [start, end) as the days it covers: the last day is the one before `end` when
    `end` is a midnight (a month from 2025-01-01 to 2025-02-01 is "2025-01-01 – 2025-01-31")."""
    first, after = _moment(start), _moment(end)
    if first is None or after is None:
        return None
    last = after - timedelta(microseconds=1) if after > first else after
    if first.date() == last.date():
        return first.date().isoformat()
    return f"{first.date().isoformat()} – {last.date().isoformat()}"


# ---------------------------------------------------------------------------- parties


def address_lines(address: Mapping[str, Any] | None) -> tuple[str, ...]:
    """A customer address (line1, line2, postal_code, city, state, country) as printed lines."""
    if not address:
        return ()
    city = " ".join(str(address[k]) for k in ("postal_code", "city") if address.get(k))
    parts = [address.get("line1"), address.get("line2"), city, address.get("state"), address.get("country")]
    return tuple(str(p).strip() for p in parts if p and str(p).strip())


def seller_party(name: str, address: str, vat_id: str, email: str) -> Party:
    """The seller from its settings (`LEDGER_SELLER_ADDRESS` lines are separated by ';')."""
    lines = tuple(part.strip() for part in address.split(ADDRESS_SEPARATOR) if part.strip())
    return Party(name=name, address_lines=lines, vat_id=vat_id.strip() or None, email=email)


def buyer_party(customer: Mapping[str, Any]) -> Party:
    """The buyer from a customer row (or the snapshot an invoice keeps of it)."""
    return Party(
        name=str(customer.get("name") or ""),
        address_lines=address_lines(customer.get("address")),
        vat_id=(customer.get("vat_id") or None),
        email=customer.get("email"),
    )


# ---------------------------------------------------------------------------- invoices


def _tax_rows(
    taxable: int, tax: int, tax_rate_bps: int, tax_exempt: str, currency: str
) -> tuple[tuple[TaxRow, ...], tuple[str, ...]]:
    base = format_amount(taxable, currency)
    if tax_exempt == "reverse":
        return (TaxRow("VAT 0% (reverse charge)", base, format_amount(0, currency)),), (REVERSE_CHARGE_TEXT,)
    if tax_exempt == "exempt":
        return (TaxRow("VAT exempt", base, format_amount(0, currency)),), (EXEMPT_TEXT,)
    # A provider's invoice (Stripe) carries its tax without the ledger knowing the rate.
    label = f"VAT {format_rate(tax_rate_bps)}" if tax_rate_bps or not tax else "Tax"
    return (TaxRow(label, base, format_amount(tax, currency)),), ()


def _line(line: Mapping[str, Any], currency: str) -> Line:
    return Line(
        description=str(line.get("description") or ""),
        period=format_period(line.get("period_start"), line.get("period_end")),
        quantity=format_quantity(line.get("quantity")),
        unit_price=format_unit_price(line.get("unit_amount"), currency),
        amount=format_amount(int(line["amount"]), currency),
    )


def _service_period(invoice: Mapping[str, Any]) -> str | None:
    found = format_period(invoice.get("period_start"), invoice.get("period_end"))
    if found is not None:
        return found
    starts = [m for m in (_moment(line.get("period_start")) for line in invoice["lines"]) if m]
    ends = [m for m in (_moment(line.get("period_end")) for line in invoice["lines"]) if m]
    return format_period(min(starts), max(ends)) if starts and ends else None


def _discount_label(coupon: Mapping[str, Any] | None) -> str:
    if not coupon:
        return "Discount"
    off = f"{coupon['percent_off']}% off" if coupon.get("percent_off") is not None else None
    named = ", ".join(str(p) for p in (coupon.get("coupon"), off) if p)
    return f"Discount ({named})" if named else "Discount"


def invoice_document(invoice: Mapping[str, Any], buyer: Party, seller: Party) -> Document:
    """An issued invoice (a draft has no number yet: the caller refuses it)."""
    currency = str(invoice["currency"])
    issued_at = _moment(invoice.get("finalized_at")) or _required_moment(invoice["created_at"])
    amount = _amounts(currency)
    subtotal, discount, tax, total = (int(invoice[k]) for k in ("subtotal", "discount", "tax", "total"))
    facts: list[tuple[str, str]] = [
        ("Invoice number", str(invoice["number"])),
        ("Issue date", issued_at.date().isoformat()),
    ]
    due = _day(invoice.get("due_date"))
    if due:
        facts.append(("Due date", due))
    period = _service_period(invoice)
    if period:
        facts.append(("Service period", period))
    facts.append(("Currency", currency))
    taxes, notes = _tax_rows(
        subtotal - discount, tax, int(invoice.get("tax_rate_bps") or 0), str(invoice["tax_exempt"]), currency
    )
    totals = [Total("Subtotal (net)", amount(subtotal))]
    if discount:
        totals.append(Total(_discount_label(invoice.get("coupon")), amount(-discount)))
        totals.append(Total("Net amount", amount(subtotal - discount)))
    totals.extend(Total(row.label, row.amount) for row in taxes)
    totals.append(Total("Total", amount(total), strong=True))
    applied = int(invoice.get("balance_applied") or 0)
    if applied:
        totals.append(Total("Paid from credit balance", amount(-applied)))
        totals.append(Total("Amount due", amount(max(total, 0) - applied), strong=True))
    status = invoice.get("status")
    return Document(
        kind="invoice",
        title="Invoice",
        number=str(invoice["number"]),
        issued_at=issued_at,
        facts=tuple(facts),
        seller=seller,
        buyer=buyer,
        currency=currency,
        line_headers=("Description", "Quantity", "Unit price (net)", "Amount (net)"),
        lines=tuple(_line(line, currency) for line in invoice["lines"]),
        taxes=taxes,
        totals=tuple(totals),
        notes=notes,
        banner="VOID: this invoice was voided and is not to be paid" if status == "void" else None,
    )


def _amounts(currency: str) -> Callable[[int], str]:
    return lambda minor: format_amount(minor, currency)


# ---------------------------------------------------------------------------- credit notes


def credit_note_tax(amount: int, invoice_tax: int, invoice_total: int) -> int:
    """The tax share of a credit note of `amount` (tax included) on an invoice: in proportion to
    the invoice's own tax, rounded half-even once (here)."""
    if invoice_total <= 0 or invoice_tax == 0:
        return 0
    return divide_half_even(amount * invoice_tax, invoice_total)


def _credited_lines(note: Mapping[str, Any], invoice: Mapping[str, Any], currency: str) -> tuple[Line, ...]:
    by_id = {str(line.get("line_id")): line for line in invoice["lines"]}
    items: Sequence[Mapping[str, Any]] = note.get("lines") or []
    if not items:
        return (
            Line(
                description=f"Credit on invoice {invoice['number']}",
                period=None,
                quantity="",
                unit_price="",
                amount=format_amount(int(note["amount"]), currency),
            ),
        )
    lines = []
    for item in items:
        line = by_id.get(str(item.get("line_id")), {})
        lines.append(
            Line(
                description=str(line.get("description") or item.get("line_id")),
                period=format_period(line.get("period_start"), line.get("period_end")),
                quantity=format_quantity(line.get("quantity")),
                unit_price=format_unit_price(line.get("unit_amount"), currency),
                amount=format_amount(int(item["amount"]), currency),
            )
        )
    return tuple(lines)


def credit_note_document(
    note: Mapping[str, Any], invoice: Mapping[str, Any], buyer: Party, seller: Party
) -> Document:
    currency = str(note["currency"])
    issued_at = _required_moment(note["created_at"])
    amount = _amounts(currency)
    credited = int(note["amount"])
    tax = credit_note_tax(credited, int(invoice["tax"]), int(invoice["total"]))
    invoice_issued = _day(invoice.get("finalized_at")) or _day(invoice.get("created_at"))
    facts: list[tuple[str, str]] = [
        ("Credit note number", str(note["number"])),
        ("Issue date", issued_at.date().isoformat()),
        ("Corrects invoice", f"{invoice['number']} of {invoice_issued}"),
    ]
    period = _service_period(invoice)
    if period:
        facts.append(("Service period", period))
    facts.append(("Reason", str(note["reason"]).replace("_", " ")))
    facts.append(("Currency", currency))
    taxes, notes = _tax_rows(
        credited - tax, tax, int(invoice.get("tax_rate_bps") or 0), str(invoice["tax_exempt"]), currency
    )
    totals = [Total("Net amount credited", amount(credited - tax))]
    totals.extend(Total(row.label, row.amount) for row in taxes)
    totals.append(Total("Total credited", amount(credited), strong=True))
    for label, key in (
        ("Off the amount due", "against_remaining"),
        ("Refunded", "refund_amount"),
        ("Credited to your balance", "credit_amount"),
    ):
        if int(note.get(key) or 0):
            totals.append(Total(label, amount(int(note[key]))))
    memo = note.get("memo")
    return Document(
        kind="credit_note",
        title="Credit note",
        number=str(note["number"]),
        issued_at=issued_at,
        facts=tuple(facts),
        seller=seller,
        buyer=buyer,
        currency=currency,
        line_headers=("Description", "Quantity", "Unit price (net)", "Amount credited"),
        lines=_credited_lines(note, invoice, currency),
        taxes=taxes,
        totals=tuple(totals),
        notes=(*notes, *((str(memo),) if memo else ())),
    )
