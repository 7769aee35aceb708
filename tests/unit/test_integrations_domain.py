"""The pure rules behind SPEC section 10: which group a usage record counts in under a quota that
groups by a property, what a plan may name as `group_by`, how a meter report is keyed, and when
two onboarding requests are the same one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from application.meter_reports import METER_SOURCE, MeterReport, record_command
from domain import ids
from domain.errors import AlreadyExists, InvalidValue, TimeOutOfRange
from domain.onboarding import Onboarding, request_fingerprint
from domain.plan import check_quotas
from domain.usage import MAX_GROUP_LENGTH, NO_GROUP, usage_group

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


# ---------------------------------------------------------------- groups


@pytest.mark.parametrize(
    ("properties", "group"),
    [
        ({"project": "alpha"}, "alpha"),
        ({"project": 42}, "42"),
        ({"project": 1.5}, "1.5"),
        ({"project": True}, "true"),
        ({"project": ""}, ""),
        ({}, NO_GROUP),
        ({"region": "eu"}, NO_GROUP),
        ({"project": None}, NO_GROUP),
        ({"project": {"id": 1}}, NO_GROUP),
        ({"project": ["a"]}, NO_GROUP),
        ({"project": float("nan")}, NO_GROUP),
        ({"project": "a\x00b"}, "ab"),
        (None, NO_GROUP),
    ],
    ids=repr,
)
def test_a_record_counts_in_the_group_its_property_names_else_in_the_empty_group(
    properties: Any, group: str
) -> None:
    assert usage_group(properties, "project") == group


def test_a_quota_that_does_not_group_puts_everything_in_the_empty_group() -> None:
    assert usage_group({"project": "alpha"}, None) == NO_GROUP


TEXT = st.characters(blacklist_characters="\x00")  # a NUL is dropped (jsonb cannot hold it)


@given(
    st.text(TEXT, min_size=MAX_GROUP_LENGTH + 1, max_size=3 * MAX_GROUP_LENGTH),
    st.text(TEXT, min_size=1, max_size=5),
)
def test_a_long_value_is_shortened_and_stays_apart_from_any_other(value: str, suffix: str) -> None:
    group = usage_group({"p": value}, "p")
    other = usage_group({"p": value + suffix}, "p")
    assert len(group) <= MAX_GROUP_LENGTH
    assert group != other
    assert usage_group({"p": value}, "p") == group


@pytest.mark.parametrize("group_by", ["project", "a" * 100])
def test_a_quota_may_group_by_a_property(group_by: str) -> None:
    check_quotas({"traffic": {"limit": 10, "group_by": group_by}})


@pytest.mark.parametrize("group_by", ["", "  ", "a" * 101, 7, ["project"]], ids=repr)
def test_a_group_by_that_is_not_a_property_name_is_refused(group_by: object) -> None:
    with pytest.raises(InvalidValue) as caught:
        check_quotas({"traffic": {"limit": 10, "group_by": group_by}})
    assert caught.value.field == "quotas.traffic.group_by"


# ---------------------------------------------------------------- meter reports


def report(**overrides: Any) -> MeterReport:
    fields: dict[str, Any] = {
        "customer_id": ids.customer_id("acme"),
        "metric": "active_users",
        "value": 15,
        "timestamp": NOW - timedelta(hours=1),
        "properties": {},
    }
    return MeterReport(**{**fields, **overrides})


def test_a_report_is_keyed_by_customer_metric_and_moment_whatever_the_offset_it_is_written_in() -> None:
    utc = record_command(report(), NOW)
    paris = record_command(
        report(timestamp=(NOW - timedelta(hours=1)).astimezone(timezone(timedelta(hours=1)))), NOW
    )
    assert utc.key.stream_id == paris.key.stream_id
    assert utc.key.content_hash == paris.key.content_hash
    assert utc.key.source == METER_SOURCE
    assert utc.occurred_at == NOW - timedelta(hours=1)


def test_another_value_or_property_is_the_same_key_with_another_fingerprint() -> None:
    first = record_command(report(), NOW)
    for other in (report(value=16), report(properties={"deployment_type": "saas"})):
        changed = record_command(other, NOW)
        assert changed.key.stream_id == first.key.stream_id
        assert changed.key.content_hash != first.key.content_hash
    assert record_command(report(value="15.0"), NOW).key.content_hash == first.key.content_hash


def test_another_customer_metric_or_moment_is_another_report() -> None:
    first = record_command(report(), NOW).key.stream_id
    assert record_command(report(customer_id=uuid4()), NOW).key.stream_id != first
    assert record_command(report(metric="seats"), NOW).key.stream_id != first
    assert record_command(report(timestamp=NOW), NOW).key.stream_id != first


@pytest.mark.parametrize(
    ("overrides", "error", "field"),
    [
        ({"value": -1}, InvalidValue, "value"),
        ({"value": True}, InvalidValue, "value"),
        ({"value": None}, InvalidValue, "value"),
        ({"metric": " "}, InvalidValue, "metric"),
        ({"timestamp": datetime(1999, 12, 31, tzinfo=UTC)}, TimeOutOfRange, "timestamp"),
        ({"timestamp": NOW + timedelta(minutes=6)}, TimeOutOfRange, "timestamp"),
    ],
    ids=repr,
)
def test_a_bad_report_is_refused_naming_its_field(
    overrides: dict[str, Any], error: type[Exception], field: str
) -> None:
    with pytest.raises(error) as caught:
        record_command(report(**overrides), NOW)
    assert getattr(caught.value, "field", None) == field


# ---------------------------------------------------------------- onboarding


def test_an_onboarding_retry_is_the_same_request_and_another_one_conflicts() -> None:
    terms: dict[str, Any] = {
        "name": "ACME",
        "email": "a@acme.com",
        "plan_code": "pro",
        "trial_days": None,
        "metadata": {"b": 1, "a": 2},
    }
    fingerprint = request_fingerprint(**terms)
    assert request_fingerprint(**{**terms, "metadata": {"a": 2, "b": 1}}) == fingerprint
    onboarding = Onboarding.complete(
        external_id="acme",
        customer_id=ids.customer_id("acme"),
        subscription_id=ids.onboarding_subscription_id("acme"),
        plan_code="pro",
        trial_end=None,
        request_hash=fingerprint,
        occurred_at=NOW,
    )
    assert onboarding.id == ids.onboarding_id("acme")
    assert onboarding.key_id == ids.onboarding_key_id("acme")
    onboarding.check_same_request(fingerprint)
    for changed in ({"trial_days": 0}, {"plan_code": "basic"}, {"email": "b@acme.com"}):
        with pytest.raises(AlreadyExists, match="another request") as caught:
            onboarding.check_same_request(request_fingerprint(**{**terms, **changed}))
        assert getattr(caught.value, "field", None) == "external_id"
