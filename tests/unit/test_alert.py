from __future__ import annotations

from uuid import uuid4

import pytest

from domain import ids
from domain.alert import DEFAULT_SEVERITY, OPEN, RESOLVED, SEVERITIES
from domain.errors import AlertAlreadyResolved, InvalidValue
from tests.unit.factories import (
    T0,
    assert_rebuilds_identically,
    assert_refused,
    at,
    event_names,
    raise_alert,
)

LATER = at(2025, 2, 3)


def test_raising_an_alert_records_raised_as_open() -> None:
    alert_id = ids.alert_id("payment_failed", "invoice:INV-000001")
    customer_id = uuid4()
    alert = raise_alert(alert_id=alert_id, customer_id=customer_id)
    assert event_names(alert) == ["Raised"]
    assert alert.id == alert_id
    assert alert.status == OPEN
    assert (alert.alert_type, alert.severity) == ("payment_failed", "critical")
    assert alert.subject == "invoice:INV-000001"
    assert alert.message == "card declined"
    assert alert.customer_id == alert.owner_customer_id == customer_id
    assert alert.raised_at == T0
    assert alert.resolved_at is None
    assert alert.note is None


def test_an_alert_about_no_customer_belongs_to_no_customer() -> None:
    assert raise_alert(customer_id=None).owner_customer_id is None


def test_one_condition_maps_to_one_alert_id() -> None:
    assert ids.alert_id("invoice_overdue", "inv-1") == ids.alert_id("invoice_overdue", "inv-1")
    assert ids.alert_id("invoice_overdue", "inv-1") != ids.alert_id("payment_failed", "inv-1")
    assert ids.alert_id("quota_threshold", "c:m", "80") != ids.alert_id("quota_threshold", "c:m", "95")


@pytest.mark.parametrize("severity", SEVERITIES)
def test_every_severity_is_accepted(severity: str) -> None:
    assert raise_alert(severity=severity).severity == severity


@pytest.mark.parametrize("severity", ["urgent", "CRITICAL", "", "info"])
def test_an_unknown_severity_is_refused(severity: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        raise_alert(severity=severity)
    assert caught.value.field == "severity"


def test_default_severities_follow_the_spec() -> None:
    assert DEFAULT_SEVERITY == {
        "payment_failed": "critical",
        "invoice_overdue": "high",
        "customer_at_risk": "high",
        "subscription_canceled": "medium",
        "quota_threshold": "medium",
        "customer_inactive": "low",  # SPEC section 10
        "projection_failed": "critical",  # a projector stopped at an event it cannot apply
    }
    assert set(DEFAULT_SEVERITY.values()) <= set(SEVERITIES)


def test_resolving_an_open_alert_records_the_note() -> None:
    alert = raise_alert()
    alert.collect_events()
    alert.resolve(note="customer updated card", occurred_at=LATER)
    assert event_names(alert) == ["Resolved"]
    assert alert.status == RESOLVED
    assert alert.note == "customer updated card"
    assert alert.resolved_at == LATER


def test_resolving_a_resolved_alert_is_refused() -> None:
    alert = raise_alert()
    alert.resolve(note="fixed", occurred_at=LATER)
    error = assert_refused(
        alert, AlertAlreadyResolved, lambda: alert.resolve(note="again", occurred_at=at(2025, 2, 4))
    )
    assert error.code == "alert_already_resolved"
    assert alert.note == "fixed"


def test_an_alert_rebuilt_from_its_events_has_the_same_state() -> None:
    alert = raise_alert()
    alert.resolve(note="paid by bank transfer", occurred_at=LATER)
    copy = assert_rebuilds_identically(alert)
    assert copy.status == RESOLVED
    assert copy.resolved_at == LATER
