"""Use cases of outgoing webhook endpoints: create, rotate the secret, disable, delete.

Each is a command like the ledger's others (an event in the log, idempotent with an
Idempotency-Key, the actor and reason on the event). The secret is made here, stored encrypted
outside the log (`infra/webhook_vault.py`) before the event naming it is appended, and shown to
the caller once; an event that failed to append leaves an unreferenced ciphertext, never an
endpoint without its secret."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError

from application import commands as c
from application.ledger import Ledger
from application.outcome import Outcome
from domain.errors import NotFound
from domain.webhook_endpoint import WebhookEndpoint
from infra.webhook_targets import check_target
from infra.webhook_vault import SecretVault, new_secret

# Both secrets sign for this long after a rotation, on the wall clock (deliveries happen in
# the real world), so receivers can switch to the new one without missing a message.
ROTATION_OVERLAP = timedelta(hours=24)


def wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class CreateWebhookEndpoint:
    url: str
    event_types: list[str]
    description: str | None = None


def endpoint_receipt(endpoint: WebhookEndpoint) -> dict[str, Any]:
    """What a write answers (and an idempotent retry answers again): never the secret itself,
    which is kept out of the log; `secret_id` lets the API show it to the caller."""
    valid_until = endpoint.previous_secret_valid_until
    return {
        "id": str(endpoint.id),
        "url": endpoint.url,
        "event_types": list(endpoint.event_types),
        "description": endpoint.description,
        "status": endpoint.status,
        "secret_id": str(endpoint.secret_id),
        "secret_fingerprint": endpoint.secret_fingerprint,
        "previous_secret_valid_until": valid_until.isoformat() if valid_until else None,
        "created_at": endpoint.created_at.isoformat(),
    }


class WebhookEndpoints:
    def __init__(
        self,
        ledger: Ledger,
        vault: SecretVault,
        *,
        allow_private: bool,
        clock: Callable[[], datetime] = wall_clock,
    ) -> None:
        self.ledger = ledger
        self.vault = vault
        self.allow_private = allow_private
        self.clock = clock

    def _endpoint(self, endpoint_id: UUID) -> WebhookEndpoint:
        try:
            found: object = self.ledger.repository.get(endpoint_id)
        except AggregateNotFoundError:
            found = None
        if not isinstance(found, WebhookEndpoint):
            raise NotFound(f"no webhook endpoint with id {endpoint_id}")
        found.check_not_deleted()
        return found

    # The ledger's own way of running a command (its idempotency record, retries on a concurrent
    # change, the envelope on every event) serves these commands too.
    def _run(self, ctx: c.CommandContext, use_case: Callable[[c.CommandContext], Outcome]) -> Outcome:
        return self.ledger._run(ctx, use_case)

    def _commit(self, ctx: c.CommandContext, endpoint: WebhookEndpoint, *, created: bool = False) -> Outcome:
        return self.ledger._commit(ctx, endpoint, endpoint_receipt(endpoint), created=created)

    def create(self, cmd: CreateWebhookEndpoint, ctx: c.CommandContext) -> Outcome:
        def use_case(ctx: c.CommandContext) -> Outcome:
            check_target(cmd.url, allow_private=self.allow_private)
            self.vault.check_key()
            endpoint_id, secret = uuid4(), new_secret(uuid4())
            endpoint = WebhookEndpoint.create(
                endpoint_id=endpoint_id,
                url=cmd.url,
                event_types=cmd.event_types,
                description=cmd.description,
                secret_id=secret.id,
                secret_fingerprint=secret.fingerprint,
                occurred_at=ctx.occurred_at,
            )
            self.vault.store(endpoint_id, secret)
            return self._commit(ctx, endpoint, created=True)

        return self._run(ctx, use_case)

    def rotate_secret(self, endpoint_id: UUID, ctx: c.CommandContext) -> Outcome:
        def use_case(ctx: c.CommandContext) -> Outcome:
            endpoint = self._endpoint(endpoint_id)
            self.vault.check_key()
            secret = new_secret(uuid4())
            endpoint.rotate_secret(
                secret_id=secret.id,
                secret_fingerprint=secret.fingerprint,
                previous_valid_until=self.clock() + ROTATION_OVERLAP,
                occurred_at=ctx.occurred_at,
            )
            self.vault.store(endpoint_id, secret)
            return self._commit(ctx, endpoint)

        return self._run(ctx, use_case)

    def disable(self, endpoint_id: UUID, reason: str, ctx: c.CommandContext) -> Outcome:
        def use_case(ctx: c.CommandContext) -> Outcome:
            endpoint = self._endpoint(endpoint_id)
            endpoint.disable(reason=reason, occurred_at=ctx.occurred_at)
            return self._commit(ctx, endpoint)

        return self._run(ctx, use_case)

    def delete(self, endpoint_id: UUID, ctx: c.CommandContext) -> Outcome:
        def use_case(ctx: c.CommandContext) -> Outcome:
            endpoint = self._endpoint(endpoint_id)
            endpoint.delete(occurred_at=ctx.occurred_at)
            return self._commit(ctx, endpoint)

        return self._run(ctx, use_case)

    def reveal(self, outcome: Outcome) -> str | None:
        """The secret a create or rotate answered with, in `whsec_` form (None if it has been
        replaced and deleted since: an Idempotency-Key retry long after)."""
        secret_id = outcome.receipt.get("secret_id")
        if not secret_id:
            return None
        return self.vault.reveal(outcome.resource_id, UUID(str(secret_id)))
