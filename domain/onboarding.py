"""An onboarding (SPEC section 10, seed 003): a customer registered, its subscription started and
an ingest key scoped to it issued, in answer to one request.

The record is kept under an id derived from the customer's external_id and appended with the
customer and the subscription, so a retry finds all of it or none of it. It names the id of the
key to issue (derived from the external_id too), never the key itself: secrets stay out of the log."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.domain import event

from domain import ids
from domain.base import LedgerAggregate
from domain.errors import AlreadyExists


def request_fingerprint(
    *, name: str, email: str, plan_code: str, trial_days: int | None, metadata: dict[str, Any]
) -> str:
    """What makes two onboarding requests for one external_id the same request."""
    terms = {
        "name": name,
        "email": email,
        "plan_code": plan_code,
        "trial_days": trial_days,
        "metadata": metadata,
    }
    try:
        encoded = orjson.dumps(terms, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except TypeError:  # a value orjson refuses (an integer beyond 64 bits): its repr instead
        encoded = repr(sorted(terms.items())).encode()
    return hashlib.sha256(encoded).hexdigest()


class Onboarding(LedgerAggregate):
    @classmethod
    def complete(
        cls,
        *,
        external_id: str,
        customer_id: UUID,
        subscription_id: UUID,
        plan_code: str,
        trial_end: datetime | None,
        request_hash: str,
        occurred_at: datetime,
    ) -> Onboarding:
        return cls._created_with_id(
            ids.onboarding_id(external_id),
            "Completed",
            external_id=external_id,
            customer_id=customer_id,
            subscription_id=subscription_id,
            plan_code=plan_code,
            trial_end=trial_end,
            key_id=ids.onboarding_key_id(external_id),
            request_hash=request_hash,
            occurred_at=occurred_at,
        )

    @event("Completed")
    def __init__(
        self,
        external_id: str,
        customer_id: UUID,
        subscription_id: UUID,
        plan_code: str,
        trial_end: datetime | None,
        key_id: UUID,
        request_hash: str,
        occurred_at: datetime,
    ) -> None:
        self.external_id = external_id
        self.customer_id = customer_id
        self.subscription_id = subscription_id
        self.plan_code = plan_code
        self.trial_end = trial_end
        self.key_id = key_id
        self.request_hash = request_hash

    def check_same_request(self, request_hash: str) -> None:
        """A retry is the same request; another one under this external_id is a conflict."""
        if request_hash != self.request_hash:
            raise AlreadyExists(
                f"customer '{self.external_id}' was onboarded with another request"
                " (name, email, plan_code, trial_days or metadata differ)",
                field="external_id",
            )
