"""Onboarding with a billing token (SPEC section 10, seed 003): register the customer, start its
subscription and issue an ingest key scoped to it, in one use case.

The key store is a table beside the log, so the two cannot be written in one append. The order
makes a crash between them harmless: the log first (customer, subscription and the onboarding
record, which names the id of the key to issue), then the key under that id, inserted only if no
key has it. A retry after a crash between the two finds the record and no key: it issues the key
and shows it, for the first time. A retry after the key was stored finds both and says the key
was issued before. Concurrent requests for one external_id meet on that id in the database, so
exactly one of them creates the key and shows it. The raw key is never in the log, and only its
hash is in the table: an answer that never reached its client cannot be shown again (an admin
mints a new scoped key with `POST /v1/api-keys`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from application import commands as c
from application.ledger import Ledger
from application.outcome import Outcome

INGEST = "ingest"


class KeyIssuer(Protocol):
    def issue_once(
        self,
        *,
        key_id: UUID,
        role: str,
        name: str,
        customer_id: UUID | None = None,
        created_by: str | None = None,
    ) -> str | None: ...


@dataclass(frozen=True)
class Onboarded:
    outcome: Outcome
    ingest_key: str | None  # None: issued by an earlier answer, which showed it

    @property
    def issued_before(self) -> bool:
        return self.ingest_key is None


def onboard(ledger: Ledger, keys: KeyIssuer, cmd: c.Onboard, ctx: c.CommandContext) -> Onboarded:
    outcome = ledger.onboard(cmd, ctx)
    raw = keys.issue_once(
        key_id=UUID(outcome.receipt["ingest_key_id"]),
        role=INGEST,
        name=f"onboarding:{cmd.external_id}"[:200],
        customer_id=UUID(outcome.receipt["customer_id"]),
        created_by=ctx.actor,
    )
    return Onboarded(outcome, raw)
