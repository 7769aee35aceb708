"""An e-mail the ledger sent (SPEC 8, "E-mail"): one aggregate per message, its id derived from
the message's natural key (`invoice_finalized:<invoice id>:<version>`: what it is about and the
event that caused it), so recording the same sending twice lands on the same stream and records
once. Its `Sent` event carries the Message-ID, which derives from the same key: a message sent
again after a crash (see projections/mailer.py) carries the Message-ID of the first sending."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid5

from eventsourcing.domain import event

from domain.base import LedgerAggregate
from domain.errors import InvalidValue
from domain.ids import LEDGER_NAMESPACE

INVOICE_FINALIZED = "invoice_finalized"
PAYMENT_RECEIPT = "payment_receipt"
PAYMENT_FAILED = "payment_failed"
CREDIT_NOTE = "credit_note"
REMINDER = "reminder"
FINAL_NOTICE = "final_notice"
KINDS = (INVOICE_FINALIZED, PAYMENT_RECEIPT, PAYMENT_FAILED, CREDIT_NOTE, REMINDER, FINAL_NOTICE)
TRANSPORTS = ("smtp", "outbox")


def email_key(kind: str, stream_id: UUID, version: int) -> str:
    """The natural key of the message an event causes: its kind, the stream and the event's
    version on it (a payment that fails twice gets two messages)."""
    return f"{kind}:{stream_id}:{version}"


def email_id(key: str) -> UUID:
    return uuid5(LEDGER_NAMESPACE, f"email:{key}")


def message_id(key: str, domain: str) -> str:
    """A Message-ID (RFC 5322) that is the same every time the message is sent."""
    return f"<{email_id(key)}@{domain}>"


class Email(LedgerAggregate):
    @classmethod
    def record_sent(
        cls,
        *,
        key: str,
        message_id: str,
        to: str,
        subject: str,
        kind: str,
        subject_id: UUID,
        customer_id: UUID | None,
        transport: str,
        occurred_at: datetime,
    ) -> Email:
        if kind not in KINDS:
            raise InvalidValue(f"kind is one of {', '.join(KINDS)}", field="kind")
        if transport not in TRANSPORTS:
            raise InvalidValue(f"transport is one of {', '.join(TRANSPORTS)}", field="transport")
        if not key.strip() or not message_id.strip() or not to.strip():
            raise InvalidValue("an e-mail has a key, a Message-ID and a recipient", field="to")
        return cls._created_with_id(
            email_id(key),
            "Sent",
            key=key,
            message_id=message_id,
            to=to,
            subject=subject,
            kind=kind,
            subject_id=subject_id,
            customer_id=customer_id,
            transport=transport,
            occurred_at=occurred_at,
        )

    @event("Sent")
    def __init__(
        self,
        key: str,
        message_id: str,
        to: str,
        subject: str,
        kind: str,
        subject_id: UUID,
        customer_id: UUID | None,
        transport: str,
        occurred_at: datetime,
    ) -> None:
        self.key = key
        self.message_id = message_id
        self.to = to
        self.subject = subject
        self.kind = kind
        self.subject_id = subject_id
        self.customer_id = customer_id
        self.transport = transport
        self.sent_at = occurred_at
