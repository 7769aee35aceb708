"""E-mail (SPEC 8): the mailer follows the log and sends each message once, to a real SMTP server
(aiosmtpd) or as .eml files, across restarts, with two mailers at once, through an SMTP server
that is down for a while; every sending is an `Email.Sent` event with its Message-ID."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
from fastapi.testclient import TestClient
from pydantic import SecretStr

from application import commands as c
from application.emails import RecordEmailSent, record_email_sent
from domain.email import email_key, message_id
from infra.bootstrap import CORE_PROJECTION, Container, bootstrap
from infra.mail.transport import OutboxFolder, SmtpTransport, transport_from
from infra.settings import Settings
from projections.documents import seller_party
from projections.mailer import Mailer
from projections.runner import head_position, wait_for_position
from tests.integration.smtp_server import SmtpServer, attached_pdf_text, text_of
from tests.integration.stripe_helpers import deliver, lifecycle


def ctx() -> c.CommandContext:
    return c.CommandContext(occurred_at=datetime.now(UTC), source="api")


def a_customer(container: Container, external_id: str = "acme") -> UUID:
    outcome = container.ledger.register_customer(
        c.RegisterCustomer(
            external_id,
            f"billing@{external_id}.example",
            "EUR",
            name=f"{external_id.title()} GmbH",
            tax_rate_bps=1900,
            vat_id="DE136695976",
        ),
        ctx(),
    )
    return outcome.resource_id


def finalized_invoice(container: Container, customer: UUID, amount: int = 10000) -> UUID:
    ledger = container.ledger
    drafted = ledger.draft_invoice(
        c.DraftInvoice(customer, "EUR", [c.InvoiceLine("Platform fee", 1, amount)]), ctx()
    )
    due = (datetime.now(UTC) + timedelta(days=14)).date()
    ledger.finalize_invoice(c.FinalizeInvoice(drafted.resource_id, due), ctx())
    return drafted.resource_id


def settled(container: Container) -> None:
    """The core read models have applied everything written so far (the mailer waits for them)."""
    container.wake_projection()
    assert wait_for_position(container.pool, CORE_PROJECTION, head_position(container.pool), 30)


def mailer_over(container: Container, transport: Any) -> Mailer:
    return Mailer(container.pool, container.ledger, transport, seller_party(container.settings))


def sent_events(container: Container) -> list[dict[str, Any]]:
    with container.pool.connection() as conn:
        rows: Any = conn.execute(
            "SELECT state FROM ledger_events WHERE event_type = 'Email.Sent' ORDER BY notification_id"
        ).fetchall()
    return [orjson.loads(row["state"]) for row in rows]


def outbox(container: Container) -> list[dict[str, Any]]:
    with container.pool.connection() as conn:
        rows: Any = conn.execute(
            "SELECT o.*, (SELECT e.originator_version FROM ledger_events e"
            " WHERE e.notification_id = o.position) AS details_version FROM mail_outbox o ORDER BY seq"
        ).fetchall()
    return list(rows)


def invoice_number(container: Container, invoice_id: UUID) -> str:
    with container.pool.connection() as conn:
        row: Any = conn.execute("SELECT number FROM rm_invoices WHERE id = %s", (invoice_id,)).fetchone()
    return str(row["number"])


def test_a_finalized_invoice_is_mailed_once_with_its_pdf_and_the_sending_is_an_event(
    container: Container, smtp_server: SmtpServer
) -> None:
    mailer = mailer_over(container, SmtpTransport(smtp_server.url))
    customer = a_customer(container)
    invoice = finalized_invoice(container, customer)
    settled(container)
    mailer.catch_up()
    mailer.catch_up()  # nothing new: nothing more
    (message,) = smtp_server.messages()
    number = invoice_number(container, invoice)
    assert message["To"] == "billing@acme.example"
    assert message["From"] == "Billing Ledger <billing@example.com>"
    assert message["Subject"] == f"Invoice {number} from Billing Ledger"
    assert "Amount due: 119.00 EUR" in text_of(message)
    pdf = attached_pdf_text(message)
    assert number in pdf and "VAT ID: DE136695976" in pdf and "Total 119.00 EUR" in pdf
    (event,) = sent_events(container)
    assert event["message_id"] == message["Message-ID"]
    assert (event["kind"], event["to"], event["subject_id"]) == (
        "invoice_finalized",
        "billing@acme.example",
        str(invoice),
    )
    (row,) = outbox(container)
    assert (row["status"], row["message_id"], row["attempts"]) == ("sent", message["Message-ID"], 1)
    assert row["key"] == event["key"] == email_key("invoice_finalized", invoice, row["details_version"])
    assert message_id(row["key"], "example.com") == event["message_id"]


def test_a_restarted_mailer_sends_nothing_again(container: Container, smtp_server: SmtpServer) -> None:
    customer = a_customer(container)
    finalized_invoice(container, customer)
    settled(container)
    mailer_over(container, SmtpTransport(smtp_server.url)).catch_up()
    assert len(smtp_server.messages()) == 1
    restarted = mailer_over(container, SmtpTransport(smtp_server.url))
    restarted.catch_up()
    assert len(smtp_server.messages()) == 1
    second = finalized_invoice(container, customer)
    settled(container)
    restarted.catch_up()
    assert [m["Subject"] for m in smtp_server.messages()][1] == (
        f"Invoice {invoice_number(container, second)} from Billing Ledger"
    )
    assert len(sent_events(container)) == 2


def test_two_mailers_running_at_once_send_each_message_once(
    container: Container, smtp_server: SmtpServer
) -> None:
    ledger = container.ledger
    customers = [a_customer(container, f"c{n}") for n in range(4)]
    invoices = [finalized_invoice(container, customer) for customer in customers for _ in range(2)]
    payment = ledger.initiate_payment(c.InitiatePayment(customers[0], 11900, "EUR", invoices[0]), ctx())
    ledger.fail_payment(c.FailPayment(payment.resource_id, "card_declined", "Your card was declined"), ctx())
    ledger.retry_payment(c.RetryPayment(payment.resource_id), ctx())
    ledger.succeed_payment(c.SucceedPayment(payment.resource_id), ctx())
    settled(container)
    mailers = [mailer_over(container, SmtpTransport(smtp_server.url)) for _ in range(2)]
    start = threading.Barrier(len(mailers))
    failures: list[BaseException] = []

    def run(mailer: Mailer) -> None:
        try:
            start.wait()
            for _ in range(3):
                mailer.catch_up()
        except BaseException as failed:
            failures.append(failed)

    threads = [threading.Thread(target=run, args=(m,)) for m in mailers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures
    mailers[0].catch_up()  # whatever one left to the other, done by now either way
    received = smtp_server.messages()
    ids = [m["Message-ID"] for m in received]
    assert len(ids) == len(set(ids)) == len(invoices) + 2  # the invoices, a failure and a receipt
    assert sorted(e["message_id"] for e in sent_events(container)) == sorted(ids)
    assert {row["status"] for row in outbox(container)} == {"sent"}


def test_payments_and_credit_notes_are_mailed(container: Container, smtp_server: SmtpServer) -> None:
    ledger = container.ledger
    customer = a_customer(container)
    invoice = finalized_invoice(container, customer)
    payment = ledger.initiate_payment(c.InitiatePayment(customer, 11900, "EUR", invoice), ctx())
    ledger.fail_payment(c.FailPayment(payment.resource_id, "card_declined", "Your card was declined"), ctx())
    ledger.retry_payment(c.RetryPayment(payment.resource_id), ctx())
    ledger.fail_payment(c.FailPayment(payment.resource_id, "expired_card", None), ctx())
    ledger.retry_payment(c.RetryPayment(payment.resource_id), ctx())
    ledger.succeed_payment(c.SucceedPayment(payment.resource_id), ctx())
    note = ledger.issue_credit_note(c.IssueCreditNote(invoice, "order_change", amount=2380), ctx())
    settled(container)
    number = invoice_number(container, invoice)
    mailer_over(container, SmtpTransport(smtp_server.url)).catch_up()
    subjects = [m["Subject"] for m in smtp_server.messages()]
    assert subjects == [
        f"Invoice {number} from Billing Ledger",
        f"Payment failed: 119.00 EUR for invoice {number}",
        f"Payment failed: 119.00 EUR for invoice {number}",  # each failure its own message
        f"Payment received: 119.00 EUR for invoice {number}",
        f"Credit note CN-000001 for invoice {number}",
    ]
    failed = smtp_server.messages()[1]
    assert "did not go through (Your card was declined)" in text_of(failed)
    assert "(expired_card)" in text_of(smtp_server.messages()[2])
    credit = attached_pdf_text(smtp_server.messages()[4])
    assert "CN-000001" in credit and f"Corrects invoice {number}" in credit
    assert note.receipt["number"] == "CN-000001"


def test_without_smtp_each_message_is_an_eml_file_in_the_outbox_folder(
    container: Container, tmp_path: Path
) -> None:
    embedded = transport_from(container.settings)
    assert isinstance(embedded, OutboxFolder)
    assert embedded.folder == container.settings.data_dir / "outbox"
    folder = OutboxFolder(tmp_path / "outbox")
    customer = a_customer(container)
    invoices = [finalized_invoice(container, customer) for _ in range(2)]
    settled(container)
    mailer_over(container, folder).catch_up()
    mailer_over(container, folder).catch_up()  # a restart writes nothing again
    files = sorted(folder.folder.iterdir())
    assert [f.suffix for f in files] == [".eml", ".eml"]
    numbers = set()
    for file in files:
        message = message_from_bytes(file.read_bytes(), policy=default)
        assert isinstance(message, EmailMessage) and message["To"] == "billing@acme.example"
        number = message["Subject"].split()[1]
        assert number in attached_pdf_text(message)
        numbers.add(number)
    assert numbers == {invoice_number(container, i) for i in invoices}
    assert {e["transport"] for e in sent_events(container)} == {"outbox"}


def test_an_unreachable_smtp_server_keeps_the_message_until_it_answers(container: Container) -> None:
    server = SmtpServer()  # not listening yet
    mailer = mailer_over(container, SmtpTransport(server.url, timeout=5))
    customer = a_customer(container)
    finalized_invoice(container, customer)
    settled(container)
    mailer.catch_up()
    (row,) = outbox(container)
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert "ConnectionRefusedError" in row["last_error"]
    assert sent_events(container) == []
    mailer.catch_up()  # not due again yet: not tried
    assert outbox(container)[0]["attempts"] == 1
    server.start()
    try:
        mailer.catch_up(now=datetime.now(UTC) + timedelta(minutes=2))  # the retry falls due
        (message,) = server.messages()
    finally:
        server.stop()
    (row,) = outbox(container)
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 2, None)
    assert [e["message_id"] for e in sent_events(container)] == [message["Message-ID"]]


class DiesAfterDelivery:
    """The SMTP server accepts the message, then the process dies before recording it."""

    name = "smtp"

    def __init__(self, url: str) -> None:
        self.smtp = SmtpTransport(url)
        self.deaths = 1

    def send(self, message: EmailMessage, key: str) -> None:
        self.smtp.send(message, key)
        if self.deaths:
            self.deaths -= 1
            raise RuntimeError("the process died")


def test_a_message_accepted_before_a_crash_is_sent_again_with_the_same_message_id(
    container: Container, smtp_server: SmtpServer
) -> None:
    customer = a_customer(container)
    finalized_invoice(container, customer)
    settled(container)
    mailer = mailer_over(container, DiesAfterDelivery(smtp_server.url))
    mailer.catch_up()
    assert len(smtp_server.messages()) == 1 and sent_events(container) == []
    mailer.catch_up(now=datetime.now(UTC) + timedelta(minutes=2))
    first, again = smtp_server.messages()
    assert first["Message-ID"] == again["Message-ID"]  # the one duplicate, recognisable as such
    assert [e["message_id"] for e in sent_events(container)] == [first["Message-ID"]]


def test_a_message_recorded_as_sent_before_a_crash_is_not_sent_again(
    container: Container, smtp_server: SmtpServer
) -> None:
    customer = a_customer(container)
    invoice = finalized_invoice(container, customer)
    settled(container)
    mailer = mailer_over(container, SmtpTransport(smtp_server.url))
    mailer.follow_once()
    (row,) = outbox(container)
    # Sent and recorded, then the process died before marking its outbox row.
    record_email_sent(
        container.ledger,
        RecordEmailSent(
            key=row["key"],
            message_id=message_id(row["key"], "example.com"),
            to="billing@acme.example",
            subject="Invoice",
            kind="invoice_finalized",
            subject_id=invoice,
            customer_id=customer,
            transport="smtp",
        ),
    )
    mailer.catch_up()
    assert smtp_server.messages() == []
    (row,) = outbox(container)
    assert (row["status"], row["message_id"]) == ("sent", message_id(row["key"], "example.com"))
    assert len(sent_events(container)) == 1


def test_invoices_mirrored_from_stripe_are_not_mailed(
    stripe_live: TestClient, stripe_live_container: Container, smtp_server: SmtpServer
) -> None:
    for event in lifecycle("mail"):
        assert deliver(stripe_live, event).status_code == 200
    settled(stripe_live_container)
    mailer_over(stripe_live_container, SmtpTransport(smtp_server.url)).catch_up()
    assert smtp_server.messages() == []
    rows = outbox(stripe_live_container)
    assert {row["kind"] for row in rows} >= {"invoice_finalized", "payment_failed"}
    assert {row["status"] for row in rows} == {"skipped"}
    assert all("Stripe" in row["note"] for row in rows)


def test_the_policies_process_mails_from_where_the_log_stood_when_it_first_ran(
    settings: Settings, database_url: str, smtp_server: SmtpServer
) -> None:
    configured = settings.model_copy(update={"smtp_url": SecretStr(smtp_server.url)})
    before = bootstrap(configured, database_url, run_projection=True)
    try:
        old = finalized_invoice(before, a_customer(before, "history"))
    finally:
        before.close()
    running = bootstrap(configured, database_url, run_projection=True, run_policies=True)
    try:
        new = finalized_invoice(running, a_customer(running, "today"))
        number = invoice_number_when_projected(running, new)
        with TestClient(_app(running), raise_server_exceptions=False) as client:
            _, key = running.keys.mint(role="read", name="finance")
            answer = poll_sent_emails(client, key)
    finally:
        running.close()
    (message,) = smtp_server.messages()
    assert message["Subject"] == f"Invoice {number} from Billing Ledger"
    assert [row["subject_id"] for row in answer] == [str(new)]
    assert str(old) not in {row["subject_id"] for row in answer}


def invoice_number_when_projected(container: Container, invoice: UUID) -> str:
    settled(container)
    return invoice_number(container, invoice)


def _app(container: Container) -> Any:
    from api.app import create_app

    return create_app(lambda: container)


def poll_sent_emails(client: TestClient, key: str, timeout: float = 30.0) -> list[dict[str, Any]]:
    """GET /v1/emails until the background mailer has sent one (bounded: it runs on its own)."""
    deadline = datetime.now(UTC) + timedelta(seconds=timeout)
    while True:
        response = client.get(
            "/v1/emails", params={"status": "sent"}, headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 200, response.text
        rows: list[dict[str, Any]] = response.json()["data"]
        if rows or datetime.now(UTC) > deadline:
            return rows
        threading.Event().wait(0.05)


def test_sent_emails_are_listed_per_customer(
    container: Container, client: TestClient, reader: dict[str, str], smtp_server: SmtpServer
) -> None:
    first, second = a_customer(container, "one"), a_customer(container, "two")
    finalized_invoice(container, first)
    finalized_invoice(container, second)
    settled(container)
    mailer_over(container, SmtpTransport(smtp_server.url)).catch_up()
    response = client.get("/v1/emails", params={"customer_id": str(first)}, headers=reader)
    assert response.status_code == 200, response.text
    (row,) = response.json()["data"]
    assert (row["kind"], row["status"], row["recipient"]) == (
        "invoice_finalized",
        "sent",
        "billing@one.example",
    )
    assert row["message_id"] in {m["Message-ID"] for m in smtp_server.messages()}
    bad = client.get("/v1/emails", params={"kind": "spam"}, headers=reader)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "kind"
