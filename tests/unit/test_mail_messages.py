"""The e-mails' composition as pure functions (SPEC 8, "E-mail"): which event calls for which
message, what a reminder and a final notice say, and the RFC 5322 message a mail client reads
(parsed back with the standard library's `email` package)."""

from __future__ import annotations

import email
import io
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.policy import default
from typing import Any

from pypdf import PdfReader

from domain.email import email_key, message_id
from infra.documents.render import render_pdf
from infra.documents.views import invoice_document
from infra.mail import messages
from projections.mailer import mail_kind, retry_delay
from tests.unit.test_documents import BUYER, SELLER, an_invoice

DUNNING = {
    "step": 2,
    "scheduled_at": "2025-03-16T00:00:00+00:00",
    "attempts": 0,
    "next_action_at": "2025-03-22T00:00:00+00:00",
    "final_action": "cancel_subscription",
}


def an_open_invoice(**changes: Any) -> dict[str, Any]:
    return an_invoice(**{"amount_remaining": 120000, **changes})


def composed_with_pdf(kind: str, invoice: dict[str, Any], dunning: dict[str, Any], today: date) -> Any:
    document = invoice_document(invoice, BUYER, SELLER)
    pdf = render_pdf(document)
    if kind == "reminder":
        return messages.reminder(invoice, dunning, document, pdf, SELLER, today)
    return messages.final_notice(invoice, dunning, document, pdf, SELLER)


def parsed(message: EmailMessage) -> EmailMessage:
    found = email.message_from_bytes(message.as_bytes(), policy=default)
    assert isinstance(found, EmailMessage)
    return found


def test_each_mailed_event_calls_for_its_message_and_a_dunning_retry_for_none() -> None:
    assert mail_kind("Invoice.Finalized", {}) == "invoice_finalized"
    assert mail_kind("Payment.Succeeded", {}) == "payment_receipt"
    assert mail_kind("Payment.Failed", {}) == "payment_failed"
    assert mail_kind("CreditNote.Issued", {}) == "credit_note"
    assert mail_kind("Invoice.DunningStepTaken", {**DUNNING, "action": "reminder"}) == "reminder"
    assert mail_kind("Invoice.DunningStepTaken", {**DUNNING, "action": "final"}) == "final_notice"
    assert mail_kind("Invoice.DunningStepTaken", {**DUNNING, "action": "retry"}) is None
    assert mail_kind("Invoice.Paid", {}) is None


def test_a_reminder_before_the_due_date_says_when_it_is_due_and_attaches_the_invoice() -> None:
    composed = composed_with_pdf(
        "reminder", an_open_invoice(), {**DUNNING, "action": "reminder"}, date(2025, 3, 12)
    )
    assert composed.subject == "Reminder: invoice INV-000042 is due on 2025-03-15"
    assert "invoice INV-000042 of 1,200.00 EUR is due on 2025-03-15." in composed.text
    assert composed.text.startswith("Hello Łódź Widgets sp. z o.o.,")
    (attachment,) = composed.attachments
    assert attachment.filename == "INV-000042.pdf"
    assert "INV-000042" in PdfReader(io.BytesIO(attachment.content)).pages[0].extract_text()


def test_a_reminder_after_the_due_date_asks_for_what_remains() -> None:
    invoice = an_open_invoice(amount_remaining=70000)
    composed = composed_with_pdf("reminder", invoice, {**DUNNING, "action": "reminder"}, date(2025, 3, 16))
    assert composed.subject == "Reminder: invoice INV-000042 was due on 2025-03-15"
    assert "was due on 2025-03-15 and 700.00 EUR remains unpaid" in composed.text
    assert "Next step: 2025-03-22." in composed.text


def test_the_final_notice_says_what_follows() -> None:
    cancel = composed_with_pdf("final", an_open_invoice(), {**DUNNING, "action": "final"}, date(2025, 4, 1))
    assert cancel.subject == "Final notice: invoice INV-000042 is overdue"
    assert "the subscription it bills is canceled" in cancel.text
    write_off = composed_with_pdf(
        "final",
        an_open_invoice(),
        {**DUNNING, "action": "final", "final_action": "mark_uncollectible"},
        date(2025, 4, 1),
    )
    assert "written off as uncollectible" in write_off.text
    assert cancel.attachments[0].filename == "INV-000042.pdf"


def test_the_message_id_is_the_same_for_the_same_message_and_ends_with_the_sellers_domain() -> None:
    key = email_key("invoice_finalized", an_invoice()["id"], 3)  # type: ignore[arg-type]
    assert message_id(key, "exemple.fr") == message_id(key, "exemple.fr")
    assert message_id(key, "exemple.fr").endswith("@exemple.fr>")
    assert message_id(email_key("invoice_finalized", an_invoice()["id"], 4), "exemple.fr") != message_id(  # type: ignore[arg-type]
        key, "exemple.fr"
    )


def test_a_composed_message_reads_back_with_its_headers_text_and_pdf() -> None:
    document = invoice_document(an_open_invoice(), BUYER, SELLER)
    composed = messages.invoice_finalized(an_open_invoice(), document, render_pdf(document), SELLER)
    sent = datetime(2025, 3, 1, 1, 0, 5, tzinfo=UTC)
    message = parsed(
        messages.as_email_message(
            composed, sender=SELLER, to="ap@widgets.pl", message_id="<abc@exemple.fr>", date_sent=sent
        )
    )
    assert message["From"] == "Société Exemple SàRL <billing@exemple.fr>"
    assert message["To"] == "ap@widgets.pl"
    assert message["Subject"] == "Invoice INV-000042 from Société Exemple SàRL"
    assert message["Message-ID"] == "<abc@exemple.fr>"
    assert message["Date"].datetime == sent
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    assert "Amount due: 1,200.00 EUR, payable by 2025-03-15." in body.get_content()
    (pdf,) = list(message.iter_attachments())
    assert (pdf.get_content_type(), pdf.get_filename()) == ("application/pdf", "INV-000042.pdf")
    assert pdf.get_content() == composed.attachments[0].content


def test_failed_sendings_are_retried_ever_less_often_up_to_an_hour_apart() -> None:
    assert [retry_delay(n).total_seconds() for n in (1, 2, 3, 7, 8, 50)] == [60, 120, 240, 3600, 3600, 3600]
