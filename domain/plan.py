from __future__ import annotations

import copy
import math
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain import ids
from domain.base import LedgerAggregate
from domain.errors import InvalidValue, PlanRetired
from domain.money import MAX_AMOUNT, check_amount, check_currency
from domain.periods import months_in
from domain.rating import unit_amount

AGGREGATIONS = ("sum", "max", "last")
ENFORCEMENTS = ("soft", "hard")
PRICE_MODELS = ("per_unit", "graduated", "volume", "package")
# A quota may count per value of a usage property (`group_by`, e.g. `project`): SPEC section 10.
MAX_GROUP_BY_LENGTH = 100


def check_quotas(quotas: dict[str, dict[str, Any]]) -> None:
    for metric, quota in quotas.items():
        field = f"quotas.{metric}"
        limit = quota.get("limit")
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int | float)
            or not math.isfinite(limit)
            or limit < 0
        ):
            raise InvalidValue("a quota limit is a number of at least 0", field=f"{field}.limit")
        if quota.get("aggregation", "sum") not in AGGREGATIONS:
            raise InvalidValue("aggregation is sum, max or last", field=f"{field}.aggregation")
        if quota.get("enforcement", "soft") not in ENFORCEMENTS:
            raise InvalidValue("enforcement is soft or hard", field=f"{field}.enforcement")
        group_by = quota.get("group_by")
        if group_by is not None and (
            not isinstance(group_by, str) or not group_by.strip() or len(group_by) > MAX_GROUP_BY_LENGTH
        ):
            raise InvalidValue(
                f"group_by names a usage property (1 to {MAX_GROUP_BY_LENGTH} characters)",
                field=f"{field}.group_by",
            )


def check_usage_prices(usage_prices: dict[str, dict[str, Any]]) -> None:
    for metric, price in usage_prices.items():
        field = f"usage_prices.{metric}"
        model = price.get("model")
        if model not in PRICE_MODELS:
            raise InvalidValue("model is per_unit, graduated, volume or package", field=f"{field}.model")
        if model in ("graduated", "volume"):
            tiers = price.get("tiers") or []
            if not tiers:
                raise InvalidValue("tiered prices need tiers", field=f"{field}.tiers")
            bounds = [tier.get("up_to") for tier in tiers]
            if bounds[-1] is not None or any(bound is None for bound in bounds[:-1]):
                raise InvalidValue("only the last tier is open-ended (up_to: null)", field=f"{field}.tiers")
            finite = [bound for bound in bounds if bound is not None]
            if any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in finite):
                raise InvalidValue("a tier bound is a whole number of at least 1", field=f"{field}.tiers")
            if finite != sorted(set(finite)):
                raise InvalidValue("tier bounds must increase", field=f"{field}.tiers")
        # Unit amounts are rates: decimal strings of minor units ("0.06"); flat and package
        # amounts are money: integers of minor units.
        rates = [(f"{field}.unit_amount", price.get("unit_amount", 0))] + [
            (f"{field}.tiers.{i}.unit_amount", tier.get("unit_amount", 0))
            for i, tier in enumerate(price.get("tiers") or [])
        ]
        for name, rate in rates:
            if unit_amount(rate, name) > MAX_AMOUNT:
                raise InvalidValue(f"a unit amount is at most {MAX_AMOUNT}", field=name)
        money = [price.get("package_amount", 0)] + [
            tier.get("flat_amount", 0) for tier in price.get("tiers") or []
        ]
        if any(isinstance(a, bool) or not isinstance(a, int) or not 0 <= a <= MAX_AMOUNT for a in money):
            raise InvalidValue(
                f"flat and package amounts are integers of minor units in [0, {MAX_AMOUNT}]", field=field
            )
        size = price.get("package_size", 0)
        if model == "package" and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise InvalidValue("package_size is at least 1", field=f"{field}.package_size")
        free = price.get("free_units", 0) or 0
        if isinstance(free, bool) or not isinstance(free, int) or free < 0:
            raise InvalidValue("free_units is a whole number of at least 0", field=f"{field}.free_units")


def normalized_usage_prices(usage_prices: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The prices with every unit amount as its canonical decimal string ("0.06", "100")."""

    def text(value: Any) -> str:
        return format(unit_amount(value, "unit_amount").normalize(), "f")

    normalized: dict[str, dict[str, Any]] = {}
    for metric, price in usage_prices.items():
        copy_ = copy.deepcopy(price)
        if "unit_amount" in copy_ and copy_["unit_amount"] is not None:
            copy_["unit_amount"] = text(copy_["unit_amount"])
        for tier in copy_.get("tiers") or []:
            tier["unit_amount"] = text(tier.get("unit_amount", 0))
        normalized[metric] = copy_
    return normalized


class Plan(LedgerAggregate):
    """A price list entry. Revisions apply to new subscriptions and explicit plan changes."""

    @staticmethod
    def create_id(code: str) -> UUID:
        return ids.plan_id(code)

    @staticmethod
    def check_terms(
        *,
        currency: str,
        amount: int,
        interval: str,
        interval_count: int,
        trial_days: int,
        quotas: dict[str, dict[str, Any]],
        usage_prices: dict[str, dict[str, Any]],
    ) -> None:
        check_currency(currency)
        check_amount(amount)
        months_in(interval, interval_count)
        if trial_days < 0:
            raise InvalidValue("trial_days cannot be negative", field="trial_days")
        check_quotas(quotas)
        check_usage_prices(usage_prices)

    @classmethod
    def define(cls, *, code: str, name: str, occurred_at: datetime, **terms: Any) -> Plan:
        if not code.strip():
            raise InvalidValue("code cannot be blank", field="code")
        cls.check_terms(**terms)
        terms["usage_prices"] = normalized_usage_prices(terms["usage_prices"])
        return cls(code=code, name=name, occurred_at=occurred_at, **terms)

    @event("Defined")
    def __init__(
        self,
        code: str,
        name: str,
        currency: str,
        amount: int,
        interval: str,
        interval_count: int,
        trial_days: int,
        quotas: dict[str, dict[str, Any]],
        usage_prices: dict[str, dict[str, Any]],
        occurred_at: datetime,
    ) -> None:
        self.code = code
        self.retired_at: datetime | None = None
        self._set_terms(name, currency, amount, interval, interval_count, trial_days, quotas, usage_prices)
        # (from, usage prices, quotas): usage is rated with the prices in force at a period's end.
        self.usage_history: list[tuple[datetime, dict[str, Any], dict[str, Any]]] = [
            (occurred_at, self.usage_prices, self.quotas)
        ]

    def _set_terms(
        self,
        name: str,
        currency: str,
        amount: int,
        interval: str,
        interval_count: int,
        trial_days: int,
        quotas: dict[str, dict[str, Any]],
        usage_prices: dict[str, dict[str, Any]],
    ) -> None:
        self.name = name
        self.currency = currency
        self.amount = amount
        self.interval = interval
        self.interval_count = interval_count
        self.trial_days = trial_days
        # Copies: the aggregate must never share a dict with the recorded event.
        self.quotas = copy.deepcopy(quotas)
        self.usage_prices = copy.deepcopy(usage_prices)

    @property
    def months_per_period(self) -> int:
        return months_in(self.interval, self.interval_count)

    def terms(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "currency": self.currency,
            "amount": self.amount,
            "interval": self.interval,
            "interval_count": self.interval_count,
            "trial_days": self.trial_days,
            "quotas": self.quotas,
            "usage_prices": self.usage_prices,
        }

    def check_not_retired(self) -> None:
        if self.retired_at is not None:
            raise PlanRetired(f"plan {self.code} is retired", field="plan_code")

    def revise(self, *, occurred_at: datetime, **terms: Any) -> bool:
        """Record new terms; returns False (and records nothing) if nothing changes."""
        self.check_not_retired()
        self.check_terms(**{k: v for k, v in terms.items() if k != "name"})
        terms["usage_prices"] = normalized_usage_prices(terms["usage_prices"])
        if terms == self.terms():
            return False
        self._revise(occurred_at=occurred_at, **terms)
        return True

    @event("Revised")
    def _revise(
        self,
        name: str,
        currency: str,
        amount: int,
        interval: str,
        interval_count: int,
        trial_days: int,
        quotas: dict[str, dict[str, Any]],
        usage_prices: dict[str, dict[str, Any]],
        occurred_at: datetime,
    ) -> None:
        self._set_terms(name, currency, amount, interval, interval_count, trial_days, quotas, usage_prices)
        self.usage_history = [*self.usage_history, (occurred_at, self.usage_prices, self.quotas)]

    def usage_terms_at(self, moment: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
        """The usage prices and quotas in force at `moment` (the first ones before any)."""
        prices, quotas = self.usage_history[0][1], self.usage_history[0][2]
        for since, later_prices, later_quotas in self.usage_history:
            if since <= moment:
                prices, quotas = later_prices, later_quotas
        return prices, quotas

    def retire(self, *, occurred_at: datetime) -> None:
        self.check_not_retired()
        self._retire(occurred_at=occurred_at)

    @event("Retired")
    def _retire(self, occurred_at: datetime) -> None:
        self.retired_at = occurred_at
