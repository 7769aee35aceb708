"""What every ledger aggregate shares: UTC business time and the customer it belongs to."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime
from functools import cache
from typing import Any, Self
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.errors import InvalidValue


def ensure_utc(moment: datetime, field: str = "effective_at") -> datetime:
    """Business time is UTC; a naive datetime is refused rather than guessed."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidValue("a moment must carry a UTC offset", field=field)
    return moment.astimezone(UTC)


@cache
def _init_defaults(cls: type) -> dict[str, Any]:
    return {
        name: parameter.default
        for name, parameter in inspect.signature(cls.__init__).parameters.items()  # type: ignore[misc]
        if parameter.default is not inspect.Parameter.empty
    }


class LedgerAggregate(Aggregate):
    """Base class. Each event method takes `occurred_at`, the business time of the change."""

    @property
    def owner_customer_id(self) -> UUID | None:
        """The customer whose history this aggregate belongs to, if any (stored on every event)."""
        value = getattr(self, "customer_id", None)
        return value if isinstance(value, UUID) else None

    @classmethod
    def _created_with_id(cls, aggregate_id: UUID | None, created_event: str, **kwargs: Any) -> Self:
        """Create the aggregate through its `created_event`, under `aggregate_id` when one is
        given (an object a provider names, mirrored under an id derived from its name) or
        under a new id otherwise."""
        if aggregate_id is None:
            return cls(**kwargs)
        # The event class wants every field; those the caller left out take __init__'s defaults.
        defaults = {k: v for k, v in _init_defaults(cls).items() if k not in kwargs}
        return cls._create(getattr(cls, created_event), id=aggregate_id, **defaults, **kwargs)


class TimeDriven(LedgerAggregate):
    """An aggregate with transitions that fall due with time (a trial ending, a period renewing):
    `advance(now)` records each one due by `now` at the moment it fell due, and `next_due_at`
    says when the next one will (None: never again). The ledger's clock keeps the latter in its
    timers and calls the former."""

    @property
    def next_due_at(self) -> datetime | None:
        raise NotImplementedError

    def advance(self, now: datetime) -> int:
        raise NotImplementedError
