"""Recording the e-mails the ledger sent (SPEC 8, "each sending is an event with its
Message-ID"): a use case of the `Ledger` application, saved in one append like every other
(`Ledger._commit`). The mailer (projections/mailer.py) records a message right after the
transport accepted it, and asks first whether it was recorded already."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from application import commands as c
from domain.email import Email, email_id

if TYPE_CHECKING:
    from application.ledger import Ledger
    from application.outcome import Outcome

SOURCE = "policy"
ACTOR = "policy:mailer"


@dataclass(frozen=True)
class RecordEmailSent:
    key: str
    message_id: str
    to: str
    subject: str
    kind: str
    subject_id: UUID
    customer_id: UUID | None
    transport: str


def email_receipt(email: Email) -> dict[str, Any]:
    return {
        "id": str(email.id),
        "key": email.key,
        "message_id": email.message_id,
        "to": email.to,
        "subject": email.subject,
        "kind": email.kind,
        "subject_id": str(email.subject_id),
        "customer_id": str(email.customer_id) if email.customer_id else None,
        "transport": email.transport,
        "sent_at": email.sent_at.isoformat(),
    }


def sent_email(ledger: Ledger, key: str) -> Email | None:
    """The recorded sending of the message with this key, if it was recorded."""
    found = ledger._find(email_id(key))
    return found if isinstance(found, Email) else None


def record_email_sent(ledger: Ledger, cmd: RecordEmailSent) -> Outcome:
    """Record that a message went out, once: the same key again records nothing and answers
    the first recording (two mailers racing conflict on the stream, and the loser finds it)."""
    ctx = c.CommandContext(occurred_at=ledger.now(), source=SOURCE, actor=ACTOR)

    def use_case(ctx: c.CommandContext) -> Outcome:
        existing = sent_email(ledger, cmd.key)
        if existing is not None:
            return ledger._commit(ctx, existing, email_receipt(existing))
        email = Email.record_sent(
            key=cmd.key,
            message_id=cmd.message_id,
            to=cmd.to,
            subject=cmd.subject,
            kind=cmd.kind,
            subject_id=cmd.subject_id,
            customer_id=cmd.customer_id,
            transport=cmd.transport,
            occurred_at=ctx.occurred_at,
        )
        return ledger._commit(ctx, email, email_receipt(email), created=True)

    return ledger._run(ctx, use_case)
