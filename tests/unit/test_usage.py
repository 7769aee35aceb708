from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import ids
from domain.errors import InvalidValue
from domain.usage import UsageRecord, normalize_usage_value
from tests.unit.factories import T0, assert_rebuilds_identically, assert_refused, at, event_names


def record(**overrides: Any) -> UsageRecord:
    fields: dict[str, Any] = {
        "record_id": ids.usage_record_id("api", "evt_1"),
        "customer_id": uuid4(),
        "metric": "api_calls",
        "value": 42,
        "idempotency_key": "evt_1",
        "properties": {"region": "eu"},
        "occurred_at": T0,
    }
    fields.update(overrides)
    return UsageRecord.record(**fields)


# ---------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (42, "42"),
        (0, "0"),
        ("1.50", "1.5"),
        ("0.000", "0"),
        ("1E+2", "100"),
        ("5E-3", "0.005"),
        (" 7 ", "7"),
        (Decimal("12.3400"), "12.34"),
        (2.5, "2.5"),
        (0.1, "0.1"),
        ("-0", "0"),
        ("-0.00", "0"),
        (10**9, "1000000000"),
        ("1E+9", "1000000000"),
        ("123456789.123456789012345678", "123456789.123456789012345678"),
    ],
    ids=repr,
)
def test_usage_values_are_kept_as_exact_canonical_decimal_strings(value: Any, text: str) -> None:
    assert normalize_usage_value(value) == text


@given(st.decimals(min_value=0, max_value=10**9, allow_nan=False, allow_infinity=False, places=6))
def test_a_normalized_value_is_numerically_equal_and_stable(value: Decimal) -> None:
    text = normalize_usage_value(value)
    assert Decimal(text) == value
    assert normalize_usage_value(text) == text
    assert "E" not in text
    assert not text.startswith("-")


@given(st.integers(min_value=0, max_value=10**9))
def test_integer_usage_is_kept_digit_for_digit(value: int) -> None:
    assert normalize_usage_value(value) == str(value)


@pytest.mark.parametrize("value", [True, False])
def test_a_boolean_usage_value_is_refused(value: bool) -> None:
    with pytest.raises(InvalidValue) as caught:
        normalize_usage_value(value)
    assert caught.value.field == "value"


@pytest.mark.parametrize("value", ["", "abc", "1,5", "1.2.3", "ten"])
def test_a_usage_value_that_is_not_a_number_is_refused(value: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        normalize_usage_value(value)
    assert caught.value.field == "value"


@pytest.mark.parametrize(
    "value",
    ["-1", -0.5, "NaN", "Infinity", "-Infinity", float("inf"), float("nan"), Decimal("sNaN")],
    ids=repr,
)
def test_a_negative_or_non_finite_usage_value_is_refused(value: Any) -> None:
    with pytest.raises(InvalidValue) as caught:
        normalize_usage_value(value)
    assert caught.value.field == "value"


# ---------------------------------------------------------------- record


def test_recording_usage_records_recorded_under_the_given_id() -> None:
    customer_id = uuid4()
    record_id = ids.usage_record_id("api", "evt_1")
    usage = record(record_id=record_id, customer_id=customer_id, value="3.50")
    assert event_names(usage) == ["Recorded"]
    assert usage.id == record_id
    assert usage.customer_id == usage.owner_customer_id == customer_id
    assert usage.metric == "api_calls"
    assert usage.value == "3.5"
    assert usage.idempotency_key == "evt_1"
    assert usage.properties == {"region": "eu"}
    assert usage.occurred_at == T0


def test_the_same_idempotency_key_lands_on_the_same_record_id() -> None:
    assert ids.usage_record_id("api", "evt_1") == ids.usage_record_id("api", "evt_1")
    assert ids.usage_record_id("api", "evt_1") != ids.usage_record_id("api", "evt_2")
    assert ids.usage_record_id("api", "evt_1") != ids.usage_record_id("stripe", "evt_1")


@pytest.mark.parametrize("metric", ["", "   "])
def test_a_blank_metric_is_refused(metric: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        record(metric=metric)
    assert caught.value.field == "metric"


@pytest.mark.parametrize("value", ["-3", "oops", True])
def test_recording_an_invalid_value_is_refused(value: Any) -> None:
    with pytest.raises(InvalidValue):
        record(value=value)


# ---------------------------------------------------------------- correct


def test_a_correction_replaces_the_value_and_keeps_the_original_period() -> None:
    usage = record(value=42, occurred_at=at(2025, 1, 30))
    usage.collect_events()
    usage.correct(value="40.0", correction_key="fix-1", occurred_at=at(2025, 2, 3))
    (corrected,) = usage.collect_events()
    assert type(corrected).__name__ == "Corrected"
    assert corrected.correction_key == "fix-1"  # type: ignore[attr-defined]
    assert usage.value == "40"
    assert usage.occurred_at == at(2025, 1, 30)


def test_correcting_to_an_invalid_value_is_refused() -> None:
    usage = record()
    error = assert_refused(
        usage,
        InvalidValue,
        lambda: usage.correct(value="-1", correction_key="fix-1", occurred_at=at(2025, 2, 3)),
    )
    assert error.field == "value"
    assert usage.value == "42"


def test_a_usage_record_rebuilt_from_its_events_has_the_same_state() -> None:
    usage = record(value="10")
    usage.correct(value="12.5", correction_key="fix-1", occurred_at=at(2025, 2, 3))
    usage.correct(value=11, correction_key="fix-2", occurred_at=at(2025, 2, 4))
    copy = assert_rebuilds_identically(usage)
    assert copy.value == "11"
    assert copy.occurred_at == T0


@pytest.mark.parametrize(
    "value",
    ["1E+999999999", "1" * 31, "0." + "1" * 19, 10**9 + 1, "1000000000.000001", 2**64, "1e10", "9" * 100],
    ids=repr,
)
def test_a_usage_value_beyond_10_to_the_9_or_too_precise_is_refused(value: str) -> None:
    with pytest.raises(InvalidValue):
        normalize_usage_value(value)
