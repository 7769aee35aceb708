"""Rating: what a quantity of usage costs under a plan's usage price (SPEC 7, "Rating").

A price names its model:
- `per_unit {unit_amount}`: quantity × unit_amount;
- `graduated {tiers: [{up_to, unit_amount, flat_amount?}]}`: each unit at the price of the tier it
  falls in; a tier's flat_amount is added once when the quantity enters it;
- `volume {tiers}`: every unit at the price of the tier that holds the total, plus that tier's
  flat_amount;
- `package {package_size, package_amount, free_units?}`:
  ceil(max(0, quantity − free_units) / package_size) × package_amount.
A tier holds the quantities up to and including its `up_to` (the last one's is null: no bound).

Unit amounts are rates, not money: decimal strings of minor units, so sub-cent prices are exact
("0.06" is 0.06 cents). Flat and package amounts are money: integers of minor units. The model's
result is exact (Decimal, never float) and rounded half-even to minor units once, per line, here
in `rate`. A quantity of zero costs nothing, flat amounts included."""

from __future__ import annotations

import decimal
from collections.abc import Mapping
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal
from typing import Any

from domain.errors import InvalidValue

# Enough digits that no product or sum of the ledger's bounded figures is ever rounded before
# the one rounding `rate` does.
EXACT = decimal.Context(prec=80, rounding=ROUND_HALF_EVEN, traps=[decimal.InvalidOperation])


def unit_amount(value: Any, field: str) -> Decimal:
    """A unit amount as an exact Decimal: a decimal string of minor units (or a whole number)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidValue('a unit_amount is a decimal string of minor units, like "0.06"', field=field)
    try:
        amount = Decimal(value)
    except decimal.InvalidOperation:
        raise InvalidValue(f"'{value}' is not a decimal number", field=field) from None
    if not amount.is_finite() or amount < 0:
        raise InvalidValue("a unit_amount is a finite decimal of at least 0", field=field)
    return amount


def exact_amount(price: Mapping[str, Any], quantity: Decimal) -> Decimal:
    """The model's exact result in minor units, before any rounding."""
    if quantity <= 0:
        return Decimal(0)
    model = price["model"]
    with decimal.localcontext(EXACT):
        if model == "per_unit":
            return quantity * unit_amount(price["unit_amount"], "unit_amount")
        if model == "graduated":
            return _graduated(price["tiers"], quantity)
        if model == "volume":
            return _volume(price["tiers"], quantity)
        if model == "package":
            billable = max(Decimal(0), quantity - Decimal(price.get("free_units") or 0))
            packages = (billable / Decimal(price["package_size"])).to_integral_value(rounding=ROUND_CEILING)
            return packages * Decimal(price["package_amount"])
    raise InvalidValue(f"unknown price model '{model}'", field="model")


def rate(price: Mapping[str, Any], quantity: Decimal) -> int:
    """What `quantity` costs in minor units: the exact result, rounded half-even once."""
    return int(exact_amount(price, quantity).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def _bound(tier: Mapping[str, Any]) -> Decimal | None:
    up_to = tier.get("up_to")
    return None if up_to is None else Decimal(up_to)


def _graduated(tiers: list[Mapping[str, Any]], quantity: Decimal) -> Decimal:
    total, floor = Decimal(0), Decimal(0)
    for index, tier in enumerate(tiers):
        ceiling = _bound(tier)
        units = (quantity if ceiling is None else min(quantity, ceiling)) - floor
        if units <= 0:
            break
        total += units * unit_amount(tier["unit_amount"], f"tiers.{index}.unit_amount")
        total += Decimal(tier.get("flat_amount") or 0)
        if ceiling is None:
            break
        floor = ceiling
    return total


def _volume(tiers: list[Mapping[str, Any]], quantity: Decimal) -> Decimal:
    for index, tier in enumerate(tiers):
        ceiling = _bound(tier)
        if ceiling is None or quantity <= ceiling:
            price = unit_amount(tier["unit_amount"], f"tiers.{index}.unit_amount")
            return quantity * price + Decimal(tier.get("flat_amount") or 0)
    raise InvalidValue("the last tier must be open-ended (up_to: null)", field="tiers")
