"""The ledger's e-mails (SPEC 8): what each says, composed from read-model rows, a rendered
document and the seller: pure functions, no I/O. `as_email_message` turns a composed message
into the RFC 5322 message the transports send (plain text, the PDF attached where there is one).

Messages: invoice finalized (its PDF attached), payment receipt, payment failed, credit note
(its PDF attached), payment reminder and final notice (the invoice's PDF attached to both)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from infra.documents.views import Document, Party, format_amount

FINAL_ACTIONS = {
    "cancel_subscription": "As the invoice remains unpaid, the subscription it bills is canceled.",
    "mark_uncollectible": "As the invoice remains unpaid, it is written off as uncollectible"
    " and may be passed on for collection.",
    "none": "Please pay it without further delay.",
}


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    maintype: str = "application"
    subtype: str = "pdf"


@dataclass(frozen=True)
class Composed:
    subject: str
    text: str
    attachments: tuple[Attachment, ...] = ()


def _money(amount: int, currency: str) -> str:
    return format_amount(int(amount), currency)


def _day(value: date | datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)[:10]


def _letter(greeting_name: str, paragraphs: list[str], seller: Party) -> str:
    lines = [f"Hello {greeting_name},", "", *[p for paragraph in paragraphs for p in (paragraph, "")]]
    signature = [seller.name, *([seller.email] if seller.email else [])]
    return "\n".join([*lines, "Kind regards,", *signature, ""])


def _pdf(document: Document, pdf: bytes) -> Attachment:
    return Attachment(document.file_name, pdf)


def _owed(invoice: Mapping[str, Any]) -> int:
    return int(invoice["amount_remaining"])


def invoice_finalized(invoice: Mapping[str, Any], document: Document, pdf: bytes, seller: Party) -> Composed:
    currency = invoice["currency"]
    total = _money(invoice["total"], currency)
    due = _day(invoice.get("due_date"))
    owed = int(invoice["total"]) - int(invoice.get("balance_applied") or 0)
    payment = (
        f"Amount due: {_money(owed, currency)}, payable by {due}."
        if owed > 0
        else "Nothing is due: the invoice is settled."
    )
    return Composed(
        subject=f"Invoice {invoice['number']} from {seller.name}",
        text=_letter(
            document.buyer.name,
            [
                f"your invoice {invoice['number']} of {total} is attached.",
                payment,
            ],
            seller,
        ),
        attachments=(_pdf(document, pdf),),
    )


def payment_receipt(
    payment: Mapping[str, Any], invoice: Mapping[str, Any] | None, buyer: Party, seller: Party, paid_on: date
) -> Composed:
    amount = _money(payment["amount"], payment["currency"])
    of = f" for invoice {invoice['number']}" if invoice and invoice.get("number") else ""
    return Composed(
        subject=f"Payment received: {amount}{of}",
        text=_letter(
            buyer.name,
            [
                f"we received your payment of {amount}{of} on {_day(paid_on)}. Thank you.",
                f"Payment reference: {payment['id']}",
            ],
            seller,
        ),
    )


def payment_failed(
    payment: Mapping[str, Any], invoice: Mapping[str, Any] | None, buyer: Party, seller: Party, failure: str
) -> Composed:
    amount = _money(payment["amount"], payment["currency"])
    of = f" for invoice {invoice['number']}" if invoice and invoice.get("number") else ""
    return Composed(
        subject=f"Payment failed: {amount}{of}",
        text=_letter(
            buyer.name,
            [
                f"your payment of {amount}{of} did not go through ({failure}).",
                "Please check your payment method; we will try again, or pay the invoice"
                " by another means before its due date.",
                f"Payment reference: {payment['id']}",
            ],
            seller,
        ),
    )


def credit_note_issued(
    note: Mapping[str, Any], invoice: Mapping[str, Any], document: Document, pdf: bytes, seller: Party
) -> Composed:
    amount = _money(note["amount"], note["currency"])
    return Composed(
        subject=f"Credit note {note['number']} for invoice {invoice['number']}",
        text=_letter(
            document.buyer.name,
            [f"credit note {note['number']} of {amount} on invoice {invoice['number']} is attached."],
            seller,
        ),
        attachments=(_pdf(document, pdf),),
    )


def reminder(
    invoice: Mapping[str, Any],
    dunning: Mapping[str, Any],
    document: Document,
    pdf: bytes,
    seller: Party,
    today: date,
) -> Composed:
    """A payment reminder (dunning action `reminder`): before the due date a friendly note,
    after it a request to pay what remains."""
    number, currency = invoice["number"], invoice["currency"]
    owed = _money(_owed(invoice), currency)
    due_date = invoice.get("due_date")
    due = _day(due_date)
    overdue = due_date is not None and date.fromisoformat(due) < today
    subject = (
        f"Reminder: invoice {number} was due on {due}"
        if overdue
        else f"Reminder: invoice {number} is due on {due}"
    )
    state = f"was due on {due} and {owed} remains unpaid" if overdue else f"of {owed} is due on {due}"
    paragraphs = [f"invoice {number} {state}.", "If you have paid it already, please ignore this reminder."]
    if dunning.get("next_action_at"):
        paragraphs.append(f"Next step: {_day(dunning['next_action_at'])}.")
    return Composed(
        subject=subject,
        text=_letter(document.buyer.name, paragraphs, seller),
        attachments=(_pdf(document, pdf),),
    )


def final_notice(
    invoice: Mapping[str, Any],
    dunning: Mapping[str, Any],
    document: Document,
    pdf: bytes,
    seller: Party,
) -> Composed:
    """The last message of the dunning schedule (action `final`), saying what follows
    (LEDGER_DUNNING_FINAL_ACTION)."""
    number, currency = invoice["number"], invoice["currency"]
    owed = _money(_owed(invoice), currency)
    consequence = FINAL_ACTIONS.get(str(dunning.get("final_action") or "none"), FINAL_ACTIONS["none"])
    return Composed(
        subject=f"Final notice: invoice {number} is overdue",
        text=_letter(
            document.buyer.name,
            [
                f"invoice {number} was due on {_day(invoice.get('due_date'))} and {owed} remains unpaid"
                " despite our reminders.",
                consequence,
                "If you have paid it already, please ignore this notice.",
            ],
            seller,
        ),
        attachments=(_pdf(document, pdf),),
    )


def as_email_message(
    composed: Composed,
    *,
    sender: Party,
    to: str,
    message_id: str,
    date_sent: datetime,
) -> EmailMessage:
    """The RFC 5322 message: From the seller, plain text (UTF-8), the attachments after it."""
    message = EmailMessage()
    local, _, domain = (sender.email or "").partition("@")
    message["From"] = Address(display_name=sender.name, username=local, domain=domain)
    message["To"] = to
    message["Subject"] = composed.subject
    message["Date"] = format_datetime(date_sent)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
    message.set_content(composed.text)
    for attachment in composed.attachments:
        message.add_attachment(
            attachment.content,
            maintype=attachment.maintype,
            subtype=attachment.subtype,
            filename=attachment.filename,
        )
    return message
