from __future__ import annotations

import copy
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain import ids
from domain.base import LedgerAggregate
from domain.errors import CustomerArchived, InvalidValue
from domain.money import check_currency

MAX_TAX_RATE_BPS = 10_000


def check_tax_rate(tax_rate_bps: int) -> None:
    if not 0 <= tax_rate_bps <= MAX_TAX_RATE_BPS:
        raise InvalidValue("tax_rate_bps is between 0 and 10000", field="tax_rate_bps")


def check_email(email: str) -> None:
    local, _, domain = email.partition("@")
    if not local or "." not in domain:
        raise InvalidValue(f"'{email}' is not an e-mail address", field="email")


class Customer(LedgerAggregate):
    @staticmethod
    def create_id(external_id: str) -> UUID:
        return ids.customer_id(external_id)

    @classmethod
    def register(
        cls,
        *,
        external_id: str,
        email: str,
        name: str,
        currency: str,
        tax_rate_bps: int,
        metadata: dict[str, Any],
        occurred_at: datetime,
    ) -> Customer:
        if not external_id.strip():
            raise InvalidValue("external_id cannot be blank", field="external_id")
        check_email(email)
        check_currency(currency)
        check_tax_rate(tax_rate_bps)
        return cls(
            external_id=external_id,
            email=email,
            name=name,
            currency=currency,
            tax_rate_bps=tax_rate_bps,
            metadata=metadata,
            occurred_at=occurred_at,
        )

    @event("Registered")
    def __init__(
        self,
        external_id: str,
        email: str,
        name: str,
        currency: str,
        tax_rate_bps: int,
        metadata: dict[str, Any],
        occurred_at: datetime,
    ) -> None:
        self.external_id = external_id
        self.email = email
        self.name = name
        self.currency = currency
        self.tax_rate_bps = tax_rate_bps
        self.metadata = copy.deepcopy(metadata)  # never share a dict with the recorded event
        self.registered_at = occurred_at
        self.archived_at: datetime | None = None

    @property
    def owner_customer_id(self) -> UUID:
        return self.id

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None

    def check_not_archived(self) -> None:
        if self.is_archived:
            raise CustomerArchived(f"customer {self.external_id} is archived")

    def update(
        self,
        *,
        email: str | None,
        name: str | None,
        tax_rate_bps: int | None,
        metadata: dict[str, Any] | None,
        occurred_at: datetime,
    ) -> bool:
        """Record the fields that change; returns False (and records nothing) if none do."""
        self.check_not_archived()
        if email is not None:
            check_email(email)
        if tax_rate_bps is not None:
            check_tax_rate(tax_rate_bps)
        changes: dict[str, Any] = {
            "email": email if email != self.email else None,
            "name": name if name != self.name else None,
            "tax_rate_bps": tax_rate_bps if tax_rate_bps != self.tax_rate_bps else None,
            "metadata": metadata if metadata != self.metadata else None,
        }
        if all(value is None for value in changes.values()):
            return False
        self._update(**changes, occurred_at=occurred_at)
        return True

    @event("Updated")
    def _update(
        self,
        email: str | None,
        name: str | None,
        tax_rate_bps: int | None,
        metadata: dict[str, Any] | None,
        occurred_at: datetime,
    ) -> None:
        if email is not None:
            self.email = email
        if name is not None:
            self.name = name
        if tax_rate_bps is not None:
            self.tax_rate_bps = tax_rate_bps
        if metadata is not None:
            self.metadata = copy.deepcopy(metadata)  # never share a dict with the recorded event

    def archive(self, *, occurred_at: datetime) -> None:
        self.check_not_archived()
        self._archive(occurred_at=occurred_at)

    @event("Archived")
    def _archive(self, occurred_at: datetime) -> None:
        self.archived_at = occurred_at
