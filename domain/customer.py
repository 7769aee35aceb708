from __future__ import annotations

import copy
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain import ids
from domain.base import LedgerAggregate
from domain.billing import check_tax_exemption
from domain.coupon import redeemed
from domain.dunning import SEND_INVOICE, check_collection_method
from domain.errors import CustomerArchived, InvalidValue
from domain.money import check_currency

MAX_TAX_RATE_BPS = 10_000
MAX_NET_TERMS_DAYS = 365
ADDRESS_FIELDS = ("line1", "line2", "postal_code", "city", "state", "country")


def check_tax_rate(tax_rate_bps: int) -> None:
    if not 0 <= tax_rate_bps <= MAX_TAX_RATE_BPS:
        raise InvalidValue("tax_rate_bps is between 0 and 10000", field="tax_rate_bps")


def check_net_terms(days: int) -> None:
    if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= MAX_NET_TERMS_DAYS:
        raise InvalidValue(f"net_terms_days is between 0 and {MAX_NET_TERMS_DAYS}", field="net_terms_days")


def check_address(address: dict[str, Any] | None) -> None:
    if address is None:
        return
    unknown = set(address) - set(ADDRESS_FIELDS)
    if unknown:
        raise InvalidValue(
            f"an address has {', '.join(ADDRESS_FIELDS)}; not {sorted(unknown)}", field="address"
        )
    if any(v is not None and not isinstance(v, str) for v in address.values()):
        raise InvalidValue("address fields are strings", field="address")


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
        tax_exempt: str = "none",
        vat_id: str | None = None,
        address: dict[str, Any] | None = None,
        net_terms_days: int = 30,
        collection_method: str = SEND_INVOICE,
    ) -> Customer:
        if not external_id.strip():
            raise InvalidValue("external_id cannot be blank", field="external_id")
        check_email(email)
        check_currency(currency)
        check_tax_rate(tax_rate_bps)
        check_tax_exemption(tax_exempt)
        check_net_terms(net_terms_days)
        check_address(address)
        check_collection_method(collection_method)
        return cls(
            external_id=external_id,
            email=email,
            name=name,
            currency=currency,
            tax_rate_bps=tax_rate_bps,
            metadata=metadata,
            occurred_at=occurred_at,
            tax_exempt=tax_exempt,
            vat_id=vat_id,
            address=address,
            net_terms_days=net_terms_days,
            collection_method=collection_method,
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
        tax_exempt: str = "none",
        vat_id: str | None = None,
        address: dict[str, Any] | None = None,
        net_terms_days: int = 30,
        collection_method: str = SEND_INVOICE,
    ) -> None:
        self.external_id = external_id
        self.email = email
        self.name = name
        self.currency = currency
        self.tax_rate_bps = tax_rate_bps
        self.metadata = copy.deepcopy(metadata)  # never share a dict with the recorded event
        self.registered_at = occurred_at
        self.archived_at: datetime | None = None
        self.tax_exempt = tax_exempt
        self.vat_id = vat_id
        self.address = copy.deepcopy(address)
        self.net_terms_days = net_terms_days
        self.collection_method = collection_method
        # Credit owed to the customer, per currency: applied to what its next invoices owe.
        self.balances: dict[str, int] = {}
        # A coupon applied to all the customer's invoices (a subscription's own discount wins).
        self.discount: dict[str, Any] | None = None

    def billing_terms(self) -> dict[str, Any]:
        """What an invoice needs to know of its customer."""
        return {
            "tax_rate_bps": self.tax_rate_bps,
            "tax_exempt": self.tax_exempt,
            "net_terms_days": self.net_terms_days,
        }

    def balance(self, currency: str) -> int:
        return self.balances.get(currency, 0)

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
        tax_exempt: str | None = None,
        vat_id: str | None = None,
        address: dict[str, Any] | None = None,
        net_terms_days: int | None = None,
        collection_method: str | None = None,
    ) -> bool:
        """Record the fields that change; returns False (and records nothing) if none do."""
        self.check_not_archived()
        if email is not None:
            check_email(email)
        if tax_rate_bps is not None:
            check_tax_rate(tax_rate_bps)
        if tax_exempt is not None:
            check_tax_exemption(tax_exempt)
        if net_terms_days is not None:
            check_net_terms(net_terms_days)
        check_address(address)
        if collection_method is not None:
            check_collection_method(collection_method)
        changes: dict[str, Any] = {
            "email": email if email != self.email else None,
            "name": name if name != self.name else None,
            "tax_rate_bps": tax_rate_bps if tax_rate_bps != self.tax_rate_bps else None,
            "metadata": metadata if metadata != self.metadata else None,
            "tax_exempt": tax_exempt if tax_exempt != self.tax_exempt else None,
            "vat_id": vat_id if vat_id != self.vat_id else None,
            "address": address if address != self.address else None,
            "net_terms_days": net_terms_days if net_terms_days != self.net_terms_days else None,
            "collection_method": (collection_method if collection_method != self.collection_method else None),
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
        tax_exempt: str | None = None,
        vat_id: str | None = None,
        address: dict[str, Any] | None = None,
        net_terms_days: int | None = None,
        collection_method: str | None = None,
    ) -> None:
        if email is not None:
            self.email = email
        if name is not None:
            self.name = name
        if tax_rate_bps is not None:
            self.tax_rate_bps = tax_rate_bps
        if metadata is not None:
            self.metadata = copy.deepcopy(metadata)  # never share a dict with the recorded event
        if tax_exempt is not None:
            self.tax_exempt = tax_exempt
        if vat_id is not None:
            self.vat_id = vat_id
        if address is not None:
            self.address = copy.deepcopy(address)
        if net_terms_days is not None:
            self.net_terms_days = net_terms_days
        if collection_method is not None:
            self.collection_method = collection_method

    def archive(self, *, occurred_at: datetime) -> None:
        self.check_not_archived()
        self._archive(occurred_at=occurred_at)

    @event("Archived")
    def _archive(self, occurred_at: datetime) -> None:
        self.archived_at = occurred_at

    # ------------------------------------------------------------------ balance and discount

    def adjust_balance(
        self, *, currency: str, amount: int, reason: str, reference: str, occurred_at: datetime
    ) -> None:
        """Credit (+) or use (−) the customer's balance in one currency; it never goes below 0."""
        check_currency(currency)
        if amount == 0:
            return
        if self.balance(currency) + amount < 0:
            raise InvalidValue(
                f"the {currency} balance is {self.balance(currency)}; {-amount} cannot be used",
                field="amount",
            )
        self._adjust_balance(
            currency=currency, amount=amount, reason=reason, reference=reference, occurred_at=occurred_at
        )

    @event("BalanceAdjusted")
    def _adjust_balance(
        self, currency: str, amount: int, reason: str, reference: str, occurred_at: datetime
    ) -> None:
        self.balances = {**self.balances, currency: self.balance(currency) + amount}

    def apply_discount(self, *, discount: dict[str, Any], occurred_at: datetime) -> None:
        self.check_not_archived()
        self._apply_discount(discount=discount, occurred_at=occurred_at)

    @event("DiscountApplied")
    def _apply_discount(self, discount: dict[str, Any], occurred_at: datetime) -> None:
        self.discount = copy.deepcopy(discount)

    def redeem_discount(self, *, invoice_id: UUID, occurred_at: datetime) -> None:
        """One invoice used the customer's discount: a repeating one has one period fewer left."""
        if self.discount is None:
            return
        self._redeem_discount(invoice_id=invoice_id, occurred_at=occurred_at)

    @event("DiscountRedeemed")
    def _redeem_discount(self, invoice_id: UUID, occurred_at: datetime) -> None:
        self.discount = redeemed(self.discount)
