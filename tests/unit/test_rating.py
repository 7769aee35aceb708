"""Rating (SPEC 7): the reference results of the specification, and properties over any price."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import InvalidValue
from domain.rating import exact_amount, rate

GRADUATED = {
    "model": "graduated",
    "tiers": [
        {"up_to": 100, "unit_amount": "100"},
        {"up_to": 200, "unit_amount": "50"},
        {"up_to": None, "unit_amount": "10"},
    ],
}
VOLUME_SUB_CENT = {
    "model": "volume",
    "tiers": [{"up_to": None, "unit_amount": "0.06", "flat_amount": 1000}],
}
PACKAGE = {"model": "package", "package_size": 100, "package_amount": 500, "free_units": 100}


# ---------------------------------------------------------------- the SPEC's reference results


def test_graduated_100_at_100_then_100_at_50_then_10_rates_250_units_at_15500() -> None:
    assert rate(GRADUATED, Decimal(250)) == 100 * 100 + 100 * 50 + 50 * 10 == 15500


def test_volume_65000_units_at_six_hundredths_of_a_cent_plus_1000_flat_rates_4900() -> None:
    assert rate(VOLUME_SUB_CENT, Decimal(65_000)) == 4900


def test_package_of_100_at_500_with_100_free_rates_201_units_at_1000() -> None:
    assert rate(PACKAGE, Decimal(201)) == 1000
    assert rate(PACKAGE, Decimal(100)) == 0
    assert rate(PACKAGE, Decimal(101)) == 500


def test_graduated_and_volume_over_the_same_tiers_differ_as_they_should() -> None:
    volume = {**GRADUATED, "model": "volume"}
    # 250 units: graduated prices each band; volume prices every unit at the third tier's 10.
    assert (rate(GRADUATED, Decimal(250)), rate(volume, Decimal(250))) == (15500, 2500)
    # 100 units sit in the first tier: both agree.
    assert rate(GRADUATED, Decimal(100)) == rate(volume, Decimal(100)) == 10_000
    # With prices rising by tier, volume costs more than graduated: neither bounds the other.
    rising = [{"up_to": 10, "unit_amount": "1"}, {"up_to": None, "unit_amount": "5"}]
    assert rate({"model": "graduated", "tiers": rising}, Decimal(20)) == 60
    assert rate({"model": "volume", "tiers": rising}, Decimal(20)) == 100


def test_a_graduated_tiers_flat_amount_is_added_once_when_the_quantity_enters_it() -> None:
    tiers = [
        {"up_to": 10, "unit_amount": "0", "flat_amount": 700},
        {"up_to": None, "unit_amount": "2", "flat_amount": 300},
    ]
    price = {"model": "graduated", "tiers": tiers}
    assert [rate(price, Decimal(q)) for q in (0, 1, 10, 11, 15)] == [0, 700, 700, 1002, 1010]


def test_a_tier_holds_the_quantities_up_to_and_including_its_bound() -> None:
    tiers = [{"up_to": 10, "unit_amount": "5"}, {"up_to": None, "unit_amount": "1", "flat_amount": 50}]
    volume = {"model": "volume", "tiers": tiers}
    assert rate(volume, Decimal(10)) == 50
    assert rate(volume, Decimal(11)) == 61


def test_per_unit_sub_cent_prices_are_exact_and_rounded_half_even_once_per_line() -> None:
    price = {"model": "per_unit", "unit_amount": "0.5"}
    assert [rate(price, Decimal(q)) for q in (1, 3, 5, 7)] == [0, 2, 2, 4]
    assert exact_amount({"model": "per_unit", "unit_amount": "0.0001"}, Decimal(3)) == Decimal("0.0003")
    assert rate({"model": "per_unit", "unit_amount": "0.0001"}, Decimal(10**9)) == 100_000


def test_fractional_quantities_are_rated_exactly() -> None:
    assert rate({"model": "per_unit", "unit_amount": "12"}, Decimal("2.5")) == 30
    assert rate(GRADUATED, Decimal("100.5")) == 10_025


@pytest.mark.parametrize("bad", [0.06, "abc", "-1", "NaN", "Infinity", True, None])
def test_a_unit_amount_that_is_not_a_finite_decimal_string_is_refused(bad: Any) -> None:
    with pytest.raises(InvalidValue):
        rate({"model": "per_unit", "unit_amount": bad}, Decimal(1))


# ---------------------------------------------------------------- properties

unit_amounts = st.decimals(min_value=0, max_value=10_000, places=4, allow_nan=False).map(str)
flats = st.integers(0, 100_000)


@st.composite
def tiers(draw: st.DrawFn) -> list[dict[str, Any]]:
    bounds = sorted(draw(st.sets(st.integers(1, 10_000), min_size=0, max_size=4)))
    return [
        {"up_to": bound, "unit_amount": draw(unit_amounts), "flat_amount": draw(flats)}
        for bound in [*bounds, None]
    ]


quantities = st.decimals(min_value=0, max_value=1_000_000, places=3, allow_nan=False)


@st.composite
def monotonic_prices(draw: st.DrawFn) -> dict[str, Any]:
    model = draw(st.sampled_from(["per_unit", "graduated", "package"]))
    if model == "per_unit":
        return {"model": model, "unit_amount": draw(unit_amounts)}
    if model == "graduated":
        return {"model": model, "tiers": draw(tiers())}
    return {
        "model": model,
        "package_size": draw(st.integers(1, 1000)),
        "package_amount": draw(flats),
        "free_units": draw(st.integers(0, 1000)),
    }


@settings(max_examples=300)
@given(monotonic_prices(), quantities, quantities)
def test_per_unit_graduated_and_package_never_cost_less_for_more(
    price: dict[str, Any], a: Decimal, b: Decimal
) -> None:
    low, high = sorted((a, b))
    assert rate(price, low) <= rate(price, high)


@settings(max_examples=300)
@given(tiers(), quantities, quantities)
def test_volume_never_costs_less_for_more_within_one_tier(
    price_tiers: list[dict[str, Any]], a: Decimal, b: Decimal
) -> None:
    price = {"model": "volume", "tiers": price_tiers}
    low, high = sorted((a, b))
    if low == 0:
        return  # zero costs nothing; the first unit may bring a flat amount
    tier_of = [
        next(i for i, t in enumerate(price_tiers) if t["up_to"] is None or q <= t["up_to"])
        for q in (low, high)
    ]
    if tier_of[0] == tier_of[1]:
        assert rate(price, low) <= rate(price, high)


@settings(max_examples=300)
@given(tiers(), quantities)
def test_graduated_rates_each_unit_at_its_tier_price(
    price_tiers: list[dict[str, Any]], quantity: Decimal
) -> None:
    """Against an independent oracle: walk the quantity tier by tier."""
    expected, floor = Decimal(0), Decimal(0)
    for tier in price_tiers:
        top = quantity if tier["up_to"] is None else min(quantity, Decimal(tier["up_to"]))
        if top > floor:
            expected += (top - floor) * Decimal(tier["unit_amount"]) + tier["flat_amount"]
        if tier["up_to"] is None:
            break
        floor = Decimal(tier["up_to"])
    assert exact_amount({"model": "graduated", "tiers": price_tiers}, quantity) == expected
