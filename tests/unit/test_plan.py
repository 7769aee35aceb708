from __future__ import annotations

from typing import Any

import pytest

from domain import ids
from domain.errors import InvalidValue, PlanRetired
from domain.plan import Plan, check_quotas, check_usage_prices, normalized_usage_prices
from tests.unit.factories import (
    T0,
    assert_rebuilds_identically,
    assert_refused,
    at,
    event_names,
    make_plan,
    plan_terms,
)

LATER = at(2025, 3, 1)


def graduated(*tiers: dict[str, Any]) -> dict[str, Any]:
    return {"api_calls": {"model": "graduated", "tiers": list(tiers)}}


def refused_usage_price(prices: dict[str, Any]) -> InvalidValue:
    with pytest.raises(InvalidValue) as caught:
        check_usage_prices(prices)
    with pytest.raises(InvalidValue):
        make_plan(usage_prices=prices)
    return caught.value


def refused_quota(quotas: dict[str, Any]) -> InvalidValue:
    with pytest.raises(InvalidValue) as caught:
        check_quotas(quotas)
    with pytest.raises(InvalidValue):
        make_plan(quotas=quotas)
    return caught.value


# ---------------------------------------------------------------- define


def test_defining_a_plan_records_defined_with_its_terms() -> None:
    quotas = {"api_calls": {"limit": 1000, "aggregation": "sum", "enforcement": "hard"}}
    prices = {"api_calls": {"model": "per_unit", "unit_amount": 2}}
    plan = make_plan(
        amount=4900, interval="year", interval_count=1, trial_days=14, quotas=quotas, usage_prices=prices
    )
    assert event_names(plan) == ["Defined"]
    assert plan.code == "pro"
    assert plan.terms() == plan_terms(
        amount=4900,
        interval="year",
        trial_days=14,
        quotas=quotas,
        usage_prices={"api_calls": {"model": "per_unit", "unit_amount": "2"}},
    )
    assert plan.months_per_period == 12
    assert plan.retired_at is None


def test_the_plan_id_is_derived_from_its_code() -> None:
    assert make_plan("pro").id == ids.plan_id("pro") == Plan.create_id("pro")
    assert make_plan("pro").id != make_plan("basic").id


def test_a_plan_belongs_to_no_customer() -> None:
    assert make_plan().owner_customer_id is None


def test_a_free_plan_is_allowed() -> None:
    assert make_plan(amount=0).amount == 0


@pytest.mark.parametrize("code", ["", "  "])
def test_a_blank_plan_code_is_refused(code: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        make_plan(code)
    assert caught.value.field == "code"


@pytest.mark.parametrize("amount", [-1, 9.99, True, "100"])
def test_a_negative_or_non_integer_plan_amount_is_refused(amount: object) -> None:
    with pytest.raises(InvalidValue) as caught:
        make_plan(amount=amount)
    assert caught.value.field == "amount"


def test_an_unknown_plan_currency_is_refused() -> None:
    with pytest.raises(InvalidValue) as caught:
        make_plan(currency="ABC")
    assert caught.value.field == "currency"


@pytest.mark.parametrize(
    ("interval", "count", "field"),
    [("week", 1, "interval"), ("month", 0, "interval_count"), ("year", -1, "interval_count")],
)
def test_an_invalid_billing_interval_is_refused(interval: str, count: int, field: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        make_plan(interval=interval, interval_count=count)
    assert caught.value.field == field


def test_negative_trial_days_are_refused_on_a_plan() -> None:
    with pytest.raises(InvalidValue) as caught:
        make_plan(trial_days=-1)
    assert caught.value.field == "trial_days"


# ---------------------------------------------------------------- quotas


@pytest.mark.parametrize(
    "quota",
    [
        {"limit": 0},
        {"limit": 100},
        {"limit": 2.5, "aggregation": "max"},
        {"limit": 10, "aggregation": "last", "enforcement": "hard"},
        {"limit": 10, "aggregation": "sum", "enforcement": "soft"},
    ],
)
def test_valid_quota_definitions_are_accepted(quota: dict[str, Any]) -> None:
    check_quotas({"seats": quota})
    assert make_plan(quotas={"seats": quota}).quotas == {"seats": quota}


@pytest.mark.parametrize("limit", [None, -1, -0.5, True, "100", float("nan"), float("inf")], ids=repr)
def test_a_quota_limit_that_is_not_a_finite_number_of_at_least_zero_is_refused(
    limit: object,
) -> None:
    quota: dict[str, Any] = {"aggregation": "sum"} if limit is None else {"limit": limit}
    assert refused_quota({"seats": quota}).field == "quotas.seats.limit"


@pytest.mark.parametrize("aggregation", ["avg", "count", "", None])
def test_an_unknown_quota_aggregation_is_refused(aggregation: object) -> None:
    quota = {"limit": 10, "aggregation": aggregation}
    assert refused_quota({"seats": quota}).field == "quotas.seats.aggregation"


@pytest.mark.parametrize("enforcement", ["strict", "", None])
def test_an_unknown_quota_enforcement_is_refused(enforcement: object) -> None:
    quota = {"limit": 10, "enforcement": enforcement}
    assert refused_quota({"seats": quota}).field == "quotas.seats.enforcement"


# ---------------------------------------------------------------- usage prices


@pytest.mark.parametrize(
    "price",
    [
        {"model": "per_unit", "unit_amount": 5},
        {"model": "per_unit", "unit_amount": 0},
        {"model": "package", "package_amount": 1000, "package_size": 100},
        {"model": "graduated", "tiers": [{"up_to": None, "unit_amount": 3}]},
        {
            "model": "graduated",
            "tiers": [
                {"up_to": 1000, "unit_amount": 0},
                {"up_to": 10000, "unit_amount": 2, "flat_amount": 500},
                {"up_to": None, "unit_amount": 1},
            ],
        },
        {
            "model": "volume",
            "tiers": [{"up_to": 10, "unit_amount": 5}, {"up_to": None, "unit_amount": 4}],
        },
    ],
)
def test_valid_usage_prices_are_accepted(price: dict[str, Any]) -> None:
    check_usage_prices({"api_calls": price})
    # Unit amounts are kept as canonical decimal strings of minor units (they are rates).
    assert make_plan(usage_prices={"api_calls": price}).usage_prices == normalized_usage_prices(
        {"api_calls": price}
    )


@pytest.mark.parametrize("model", ["tiered", "flat", None, ""])
def test_an_unknown_price_model_is_refused(model: object) -> None:
    error = refused_usage_price({"api_calls": {"model": model, "unit_amount": 1}})
    assert error.field == "usage_prices.api_calls.model"


@pytest.mark.parametrize("model", ["graduated", "volume"])
@pytest.mark.parametrize("tiers", [None, []])
def test_tiered_prices_without_tiers_are_refused(model: str, tiers: object) -> None:
    error = refused_usage_price({"api_calls": {"model": model, "tiers": tiers}})
    assert error.field == "usage_prices.api_calls.tiers"


def test_a_last_tier_with_a_bound_is_refused() -> None:
    prices = graduated({"up_to": 10, "unit_amount": 5}, {"up_to": 100, "unit_amount": 4})
    error = refused_usage_price(prices)
    assert error.field == "usage_prices.api_calls.tiers"
    assert "open-ended" in error.message


def test_an_open_ended_tier_before_the_last_is_refused() -> None:
    prices = graduated(
        {"up_to": 10, "unit_amount": 5},
        {"up_to": None, "unit_amount": 4},
        {"up_to": None, "unit_amount": 3},
    )
    assert "open-ended" in refused_usage_price(prices).message


@pytest.mark.parametrize("bounds", [(100, 10), (10, 10), (10, 100, 50)])
def test_tier_bounds_that_do_not_strictly_increase_are_refused(bounds: tuple[int, ...]) -> None:
    tiers = [{"up_to": b, "unit_amount": 1} for b in bounds] + [{"up_to": None, "unit_amount": 1}]
    error = refused_usage_price(graduated(*tiers))
    assert error.field == "usage_prices.api_calls.tiers"
    assert "increase" in error.message


@pytest.mark.parametrize("bound", [0, -10, 2.5, "10", True], ids=repr)
def test_a_tier_bound_that_is_not_a_whole_number_of_at_least_one_is_refused(
    bound: object,
) -> None:
    prices = graduated({"up_to": bound, "unit_amount": 1}, {"up_to": None, "unit_amount": 1})
    assert refused_usage_price(prices).field == "usage_prices.api_calls.tiers"


def test_string_tier_bounds_mixed_with_numbers_are_refused_as_invalid_not_crashing() -> None:
    prices = graduated(
        {"up_to": 10, "unit_amount": 1},
        {"up_to": "100", "unit_amount": 1},
        {"up_to": None, "unit_amount": 1},
    )
    refused_usage_price(prices)


@pytest.mark.parametrize(
    "price",
    [
        {"model": "per_unit", "unit_amount": -1},
        {"model": "per_unit", "unit_amount": 0.5},
        {"model": "per_unit", "unit_amount": None},
        {"model": "per_unit", "unit_amount": True},
        {"model": "package", "package_amount": -100, "package_size": 10},
        {"model": "graduated", "tiers": [{"up_to": None, "unit_amount": -2}]},
        {"model": "volume", "tiers": [{"up_to": None, "unit_amount": 1, "flat_amount": -1}]},
    ],
    ids=repr,
)
def test_negative_or_fractional_prices_are_refused(price: dict[str, Any]) -> None:
    field = refused_usage_price({"api_calls": price}).field
    assert field is not None and field.startswith("usage_prices.api_calls")


@pytest.mark.parametrize("size", [None, 0, -1, 2.5, "10", True], ids=repr)
def test_a_package_size_that_is_not_a_whole_number_of_at_least_one_is_refused(
    size: object,
) -> None:
    price: dict[str, Any] = {"model": "package", "package_amount": 100}
    if size is not None:
        price["package_size"] = size
    error = refused_usage_price({"api_calls": price})
    assert error.field == "usage_prices.api_calls.package_size"


# ---------------------------------------------------------------- revise


def test_revising_records_revised_with_the_new_terms() -> None:
    plan = make_plan()
    plan.collect_events()
    new_terms = plan_terms(name="Pro 2025", amount=3900, trial_days=7)
    assert plan.revise(occurred_at=LATER, **new_terms) is True
    assert event_names(plan) == ["Revised"]
    assert plan.terms() == new_terms
    assert plan.code == "pro"


def test_renaming_alone_is_a_revision() -> None:
    plan = make_plan()
    plan.collect_events()
    assert plan.revise(occurred_at=LATER, **plan_terms(name="Professional"))
    assert event_names(plan) == ["Revised"]
    assert plan.name == "Professional"


def test_a_revision_that_changes_nothing_records_nothing() -> None:
    plan = make_plan()
    plan.collect_events()
    assert plan.revise(occurred_at=LATER, **plan_terms()) is False
    assert plan.collect_events() == []


@pytest.mark.parametrize(
    "bad_terms",
    [
        {"amount": -100},
        {"currency": "ZZZ"},
        {"interval": "week"},
        {"interval_count": 0},
        {"trial_days": -3},
        {"quotas": {"seats": {"limit": -1}}},
        {"usage_prices": {"calls": {"model": "bogus"}}},
    ],
    ids=lambda terms: next(iter(terms)),
)
def test_a_revision_with_invalid_terms_is_refused(bad_terms: dict[str, Any]) -> None:
    plan = make_plan()
    assert_refused(plan, InvalidValue, lambda: plan.revise(occurred_at=LATER, **plan_terms(**bad_terms)))


def test_revising_a_retired_plan_is_refused() -> None:
    plan = make_plan()
    plan.retire(occurred_at=LATER)
    error = assert_refused(plan, PlanRetired, lambda: plan.revise(occurred_at=LATER, **plan_terms(amount=1)))
    assert error.field == "plan_code"


# ---------------------------------------------------------------- retire


def test_retiring_records_retired() -> None:
    plan = make_plan()
    plan.collect_events()
    plan.check_not_retired()
    plan.retire(occurred_at=LATER)
    assert event_names(plan) == ["Retired"]
    assert plan.retired_at == LATER
    with pytest.raises(PlanRetired):
        plan.check_not_retired()


def test_retiring_a_retired_plan_is_refused() -> None:
    plan = make_plan()
    plan.retire(occurred_at=LATER)
    assert_refused(plan, PlanRetired, lambda: plan.retire(occurred_at=at(2025, 4, 1)))
    assert plan.retired_at == LATER


# ---------------------------------------------------------------- history


def test_a_plan_rebuilt_from_its_events_has_the_same_state() -> None:
    plan = make_plan(quotas={"seats": {"limit": 5}}, occurred_at=T0)
    plan.revise(occurred_at=LATER, **plan_terms(amount=3900, interval="year"))
    plan.retire(occurred_at=at(2025, 4, 1))
    copy = assert_rebuilds_identically(plan)
    assert copy.amount == 3900
    assert copy.months_per_period == 12
    assert copy.retired_at == at(2025, 4, 1)
