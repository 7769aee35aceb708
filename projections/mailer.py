"""The mailer: a policy that follows the log and e-mails customers (SPEC 8, "E-mail"), each
message exactly once, even across restarts and with several processes running it.

Which events mail what (the customer's e-mail address from the read model):
- `Invoice.Finalized` → the invoice, its PDF attached;
- `Payment.Succeeded` → a receipt; `Payment.Failed` → "payment failed" (each failure its own);
- `CreditNote.Issued` → the credit note, its PDF attached;
- `Invoice.DunningStepTaken` → action `reminder`: a reminder, `final`: the final notice (both
  with the invoice's PDF); `retry` mails nothing (the payment's outcome will).
Invoices billed elsewhere (mirrored from Stripe, which mails its own) and their payments and
credit notes are not mailed: their messages are queued as `skipped`, saying why.

How "exactly once" holds, in two steps:
1. The follower reads the events the core read models have applied (like projections/policies.py,
   its own checkpoint `mailer`) and queues one outbox row per message under its natural key
   (`invoice_finalized:<invoice id>:<version>`), in the transaction that moves its checkpoint:
   a crash before the commit queues nothing and the events are read again; `ON CONFLICT DO
   NOTHING` makes a second queueing a no-op; two followers serialise on the checkpoint row.
2. The sender claims one due row (`FOR UPDATE SKIP LOCKED`: two senders never hold the same
   one), asks the ledger whether that message's `Email.Sent` is recorded (then it only marks
   the row sent), else composes and sends it, records `Email.Sent` (with the Message-ID) through
   the Ledger application, and marks the row sent, committing the claim.
   A transport that fails leaves the row pending with its error, tried again later on the wall
   clock (1 min, 2, 4... at most an hour apart, for ever: nothing is dropped).

The one window that cannot be closed: the SMTP server accepted the message and the process died
(or lost the database) before `Email.Sent` was recorded. The row is still pending, so the
message is sent again, with the same Message-ID (it derives from the key), which lets mail
clients and archives recognise the duplicate. In the outbox folder the second writing replaces
the first file (same name), so there it stays one file.

On its first run the mailer starts at the log's head (`begin_at_head`): an existing ledger that
gains e-mail does not mail its whole history."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast
from uuid import UUID

import orjson
from psycopg import Connection
from psycopg_pool import ConnectionPool

from application.emails import RecordEmailSent, record_email_sent, sent_email
from application.ledger import Ledger
from domain import email as mail
from infra.background import BackgroundLoop
from infra.documents.render import render_pdf
from infra.documents.views import Party, buyer_party
from infra.mail import messages
from infra.mail.transport import DeliveryFailed, Transport
from projections import mail_outbox as outbox
from projections import queries
from projections.checkpoints import STORE_PARTITION, applied_position, lock_checkpoint, save_checkpoint
from projections.documents import load_credit_note_document, load_invoice_document

log = logging.getLogger(__name__)

MAILER = "mailer"
BATCH = 1000
SENDS_PER_STEP = 20
FIRST_RETRY = timedelta(minutes=1)
LAST_RETRY = timedelta(hours=1)
EVENTS_TABLE = "ledger_events"
DUNNING_ACTIONS = {"reminder": mail.REMINDER, "final": mail.FINAL_NOTICE}
MAILED_EVENTS = {
    "Invoice.Finalized": mail.INVOICE_FINALIZED,
    "Payment.Succeeded": mail.PAYMENT_RECEIPT,
    "Payment.Failed": mail.PAYMENT_FAILED,
    "CreditNote.Issued": mail.CREDIT_NOTE,
    "Invoice.DunningStepTaken": "",  # its kind depends on the step's action
}
SELECT_MAILED = (
    "SELECT notification_id AS position, originator_id AS stream_id, originator_version AS version,"
    " event_type AS type, occurred_at, customer_id, state"
    f" FROM {EVENTS_TABLE} WHERE notification_id > %s AND notification_id <= %s"
    " AND event_type = ANY(%s) ORDER BY notification_id"
)


def mail_kind(event_type: str, payload: Mapping[str, Any]) -> str | None:
    """The message an event calls for, if any."""
    kind = MAILED_EVENTS.get(event_type)
    if kind is None:
        return None
    if kind:
        return kind
    return DUNNING_ACTIONS.get(str(payload.get("action")))


def retry_delay(attempts: int) -> timedelta:
    """After the n-th failed attempt: 1 min, 2, 4, ... at most an hour."""
    doublings = min(max(attempts - 1, 0), 12)  # 2^12 minutes is past the cap already
    return min(FIRST_RETRY * (1 << doublings), LAST_RETRY)


@dataclass(frozen=True)
class Mailed:
    event_position: int
    stream_id: UUID
    version: int
    type: str
    occurred_at: datetime
    customer_id: UUID | None
    payload: dict[str, Any]


class NotInReadModels(LookupError):
    """What a message is about is not in the read models (yet): it is tried again later."""


class Mailer:
    def __init__(
        self,
        pool: ConnectionPool,
        ledger: Ledger,
        transport: Transport,
        seller: Party,
        core: str = "core",
    ) -> None:
        self.pool = pool
        self.ledger = ledger
        self.transport = transport
        self.seller = seller
        self.core = core
        self.domain = (seller.email or "ledger.invalid").rpartition("@")[2]

    # ------------------------------------------------------------------ the loop

    def begin_at_head(self) -> None:
        """A mailer that never ran starts at the log's head (history is not mailed)."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(
                "INSERT INTO projection_partitions (name, partition, position, watermark)"
                f" SELECT %s, %s, head, head FROM (SELECT coalesce(max(notification_id), 0) AS head"
                f" FROM {EVENTS_TABLE}) h ON CONFLICT DO NOTHING",
                (MAILER, STORE_PARTITION),
            )

    def run_once(self, now: datetime | None = None) -> int:
        """Queue what the next events call for, then send what is due: the work done."""
        done = self.follow_once()
        for _ in range(SENDS_PER_STEP):
            sent = self.send_once(now)
            if not sent:
                break
            done += sent
        return done

    def catch_up(self, now: datetime | None = None) -> int:
        total = 0
        while done := self.run_once(now):
            total += done
        return total

    # ------------------------------------------------------------------ 1. follow the log

    def follow_once(self) -> int:
        ready = applied_position(self.pool, self.core)
        with self.pool.connection() as conn, conn.transaction():
            checkpoint = lock_checkpoint(conn, MAILER, STORE_PARTITION)
            if checkpoint.position >= ready:
                return 0
            upto = min(ready, checkpoint.position + BATCH)
            rows = cast(
                list[dict[str, Any]],
                conn.execute(SELECT_MAILED, (checkpoint.position, upto, list(MAILED_EVENTS))).fetchall(),
            )
            for row in rows:
                event = Mailed(
                    row["position"],
                    row["stream_id"],
                    row["version"],
                    row["type"],
                    row["occurred_at"],
                    row["customer_id"],
                    orjson.loads(row["state"]),
                )
                queued = self._queued(conn, event)
                if queued is not None:
                    outbox.enqueue(conn, queued)
            checkpoint.position = checkpoint.watermark = upto
            save_checkpoint(conn, MAILER, checkpoint)
            return len(rows) or 1

    def _queued(self, conn: Connection[Any], e: Mailed) -> outbox.Queued | None:
        kind = mail_kind(e.type, e.payload)
        if kind is None:
            return None
        invoice_id: UUID | None = e.stream_id
        customer_id = e.customer_id
        skipped: str | None = None
        if kind in (mail.PAYMENT_RECEIPT, mail.PAYMENT_FAILED):
            payment = queries.get_payment(conn, e.stream_id)
            invoice_id = payment["invoice_id"] if payment else None
            customer_id = customer_id or (payment["customer_id"] if payment else None)
            if _first_source(conn, e.stream_id) == "stripe":
                skipped = "billed elsewhere: the payment was mirrored from Stripe"
        elif kind == mail.CREDIT_NOTE:
            invoice_id = UUID(str(e.payload["invoice_id"]))
        if skipped is None and invoice_id is not None and _first_source(conn, invoice_id) == "stripe":
            skipped = "billed elsewhere: the invoice was mirrored from Stripe, which mails its own"
        key = mail.email_key(kind, e.stream_id, e.version)
        return outbox.Queued(
            key=key,
            email_id=mail.email_id(key),
            kind=kind,
            subject_id=e.stream_id,
            customer_id=customer_id,
            position=e.event_position,
            occurred_at=e.occurred_at,
            details=e.payload,
            skipped=skipped,
        )

    # ------------------------------------------------------------------ 2. send

    def send_once(self, now: datetime | None = None) -> int:
        """Send the next due message (`now`: the wall clock the retries are due by; the
        database's when None). Answers 1 if it handled one, else 0."""
        with self.pool.connection() as conn, conn.transaction():
            row = outbox.claim_due(conn, now)
            if row is None:
                return 0
            key = row["key"]
            recorded = sent_email(self.ledger, key)
            if recorded is not None:  # sent and recorded; the process died before this commit
                outbox.mark_sent(
                    conn,
                    key,
                    recipient=recorded.to,
                    subject=recorded.subject,
                    message_id=recorded.message_id,
                    transport=recorded.transport,
                    sent_at=recorded.sent_at,
                    attempted=False,
                )
                return 1
            message_id = mail.message_id(key, self.domain)
            try:
                composed, recipient = self.compose(conn, row)
                message = messages.as_email_message(
                    composed,
                    sender=self.seller,
                    to=recipient,
                    message_id=message_id,
                    date_sent=datetime.now(UTC),
                )
                self.transport.send(message, key)
            except DeliveryFailed as failed:
                self._failed(conn, row, str(failed), now)
                return 1
            except Exception as broken:
                # One message that cannot be composed (a bug, a row not there) must not hold the
                # others: it waits its retry like a failed delivery, its error shown.
                log.exception("e-mail %s could not be composed", key)
                self._failed(conn, row, f"{type(broken).__name__}: {broken}", now)
                return 1
            outcome = record_email_sent(
                self.ledger,
                RecordEmailSent(
                    key=key,
                    message_id=message_id,
                    to=recipient,
                    subject=composed.subject,
                    kind=row["kind"],
                    subject_id=row["subject_id"],
                    customer_id=row["customer_id"],
                    transport=self.transport.name,
                ),
            )
            outbox.mark_sent(
                conn,
                key,
                recipient=recipient,
                subject=composed.subject,
                message_id=message_id,
                transport=self.transport.name,
                sent_at=datetime.fromisoformat(outcome.receipt["sent_at"]),
                attempted=True,
            )
            return 1

    def _failed(
        self, conn: Connection[Any], row: Mapping[str, Any], error: str, now: datetime | None
    ) -> None:
        base = now or datetime.now(UTC)
        attempts = int(row["attempts"]) + 1
        log.warning("e-mail %s not sent (attempt %d): %s", row["key"], attempts, error)
        outbox.mark_failed(conn, row["key"], error, base + retry_delay(attempts))

    # ------------------------------------------------------------------ composing

    def compose(self, conn: Connection[Any], row: Mapping[str, Any]) -> tuple[messages.Composed, str]:
        """The message a queued row stands for, and its recipient: the customer's e-mail."""
        customer = queries.get_customer_row(conn, row["customer_id"]) if row["customer_id"] else None
        if customer is None:
            raise NotInReadModels(f"no customer {row['customer_id']} in the read models")
        compose = self._composers()[row["kind"]]
        return compose(conn, row, customer), str(customer["email"])

    def _composers(
        self,
    ) -> dict[str, Callable[[Connection[Any], Mapping[str, Any], Mapping[str, Any]], messages.Composed]]:
        return {
            mail.INVOICE_FINALIZED: self._invoice_finalized,
            mail.PAYMENT_RECEIPT: self._payment_receipt,
            mail.PAYMENT_FAILED: self._payment_failed,
            mail.CREDIT_NOTE: self._credit_note,
            mail.REMINDER: self._reminder,
            mail.FINAL_NOTICE: self._final_notice,
        }

    def _invoice(self, conn: Connection[Any], invoice_id: UUID) -> dict[str, Any]:
        invoice = queries.get_invoice(conn, invoice_id)
        if invoice is None:
            raise NotInReadModels(f"no invoice {invoice_id} in the read models")
        return invoice

    def _invoice_finalized(
        self, conn: Connection[Any], row: Mapping[str, Any], customer: Mapping[str, Any]
    ) -> messages.Composed:
        document = load_invoice_document(conn, row["subject_id"], self.seller)
        invoice = self._invoice(conn, row["subject_id"])
        return messages.invoice_finalized(invoice, document, render_pdf(document), self.seller)

    def _payment(
        self, conn: Connection[Any], row: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        payment = queries.get_payment(conn, row["subject_id"])
        if payment is None:
            raise NotInReadModels(f"no payment {row['subject_id']} in the read models")
        invoice = queries.get_invoice(conn, payment["invoice_id"]) if payment["invoice_id"] else None
        return payment, invoice

    def _payment_receipt(
        self, conn: Connection[Any], row: Mapping[str, Any], customer: Mapping[str, Any]
    ) -> messages.Composed:
        payment, invoice = self._payment(conn, row)
        paid_on: date = row["occurred_at"].date()
        return messages.payment_receipt(payment, invoice, buyer_party(customer), self.seller, paid_on)

    def _payment_failed(
        self, conn: Connection[Any], row: Mapping[str, Any], customer: Mapping[str, Any]
    ) -> messages.Composed:
        payment, invoice = self._payment(conn, row)
        details = row["details"]
        failure = details.get("failure_message") or details.get("failure_code") or "no reason given"
        return messages.payment_failed(payment, invoice, buyer_party(customer), self.seller, str(failure))

    def _credit_note(
        self, conn: Connection[Any], row: Mapping[str, Any], customer: Mapping[str, Any]
    ) -> messages.Composed:
        document = load_credit_note_document(conn, row["subject_id"], self.seller)
        note = queries.get_credit_note(conn, row["subject_id"])
        if note is None:
            raise NotInReadModels(f"no credit note {row['subject_id']} in the read models")
        invoice = self._invoice(conn, note["invoice_id"])
        return messages.credit_note_issued(note, invoice, document, render_pdf(document), self.seller)

    def _reminder(
        self, conn: Connection[Any], row: Mapping[str, Any], customer: Mapping[str, Any]
    ) -> messages.Composed:
        document = load_invoice_document(conn, row["subject_id"], self.seller)
        invoice = self._invoice(conn, row["subject_id"])
        today: date = row["occurred_at"].date()
        return messages.reminder(invoice, row["details"], document, render_pdf(document), self.seller, today)

    def _final_notice(
        self, conn: Connection[Any], row: Mapping[str, Any], customer: Mapping[str, Any]
    ) -> messages.Composed:
        document = load_invoice_document(conn, row["subject_id"], self.seller)
        invoice = self._invoice(conn, row["subject_id"])
        return messages.final_notice(invoice, row["details"], document, render_pdf(document), self.seller)


def _first_source(conn: Connection[Any], stream_id: UUID) -> str | None:
    """Who created a stream (api, policy, stripe...): a Stripe-mirrored invoice or payment was
    created by the Stripe sync."""
    row: dict[str, Any] | None = conn.execute(
        f"SELECT source FROM {EVENTS_TABLE} WHERE originator_id = %s ORDER BY originator_version LIMIT 1",
        (stream_id,),
    ).fetchone()
    return str(row["source"]) if row else None


class BackgroundMailer(BackgroundLoop):
    def __init__(self, mailer: Mailer, poll_seconds: float) -> None:
        self.mailer = mailer
        super().__init__(MAILER, mailer.run_once, poll_seconds=poll_seconds, max_idle_seconds=1.0)
