from __future__ import annotations

from typing import Any

import pytest

from domain import ids
from domain.customer import Customer
from domain.errors import CustomerArchived, InvalidValue
from tests.unit.factories import (
    T0,
    assert_rebuilds_identically,
    assert_refused,
    at,
    event_names,
    make_customer,
)

LATER = at(2025, 3, 1)


def no_changes(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "email": None,
        "name": None,
        "tax_rate_bps": None,
        "metadata": None,
        "occurred_at": LATER,
    }
    fields.update(changes)
    return fields


# ---------------------------------------------------------------- register


def test_registering_a_customer_records_registered_with_its_details() -> None:
    customer = make_customer()
    assert event_names(customer) == ["Registered"]
    assert customer.external_id == "cus_1"
    assert customer.email == "ada@example.com"
    assert customer.currency == "EUR"
    assert customer.tax_rate_bps == 2000
    assert customer.metadata == {"segment": "smb"}
    assert customer.registered_at == T0
    assert not customer.is_archived
    assert customer.archived_at is None


def test_the_customer_id_is_derived_from_the_external_id() -> None:
    customer = make_customer(external_id="cus_42")
    assert customer.id == ids.customer_id("cus_42") == Customer.create_id("cus_42")
    assert make_customer(external_id="cus_42").id == customer.id
    assert make_customer(external_id="cus_43").id != customer.id


def test_a_customer_owns_its_own_history() -> None:
    customer = make_customer()
    assert customer.owner_customer_id == customer.id


@pytest.mark.parametrize("external_id", ["", "   "])
def test_a_blank_external_id_is_refused(external_id: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        make_customer(external_id=external_id)
    assert caught.value.field == "external_id"


@pytest.mark.parametrize("email", ["", "ada", "@example.com", "ada@example", "ada@"])
def test_an_invalid_email_is_refused_at_registration(email: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        make_customer(email=email)
    assert caught.value.field == "email"


@pytest.mark.parametrize("currency", ["eur", "EURO", "XXX"])
def test_an_unknown_currency_is_refused_at_registration(currency: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        make_customer(currency=currency)
    assert caught.value.field == "currency"


@pytest.mark.parametrize("tax_rate_bps", [-1, 10_001])
def test_a_tax_rate_outside_0_to_100_percent_is_refused(tax_rate_bps: int) -> None:
    with pytest.raises(InvalidValue) as caught:
        make_customer(tax_rate_bps=tax_rate_bps)
    assert caught.value.field == "tax_rate_bps"


@pytest.mark.parametrize("tax_rate_bps", [0, 10_000])
def test_tax_rates_of_0_and_100_percent_are_accepted(tax_rate_bps: int) -> None:
    assert make_customer(tax_rate_bps=tax_rate_bps).tax_rate_bps == tax_rate_bps


# ---------------------------------------------------------------- update


def test_updating_records_only_the_fields_that_change() -> None:
    customer = make_customer()
    customer.collect_events()
    changed = customer.update(
        **no_changes(email="ada@lovelace.org", name="Ada", tax_rate_bps=2000, metadata=None)
    )
    assert changed is True
    (updated,) = customer.collect_events()
    assert type(updated).__name__ == "Updated"
    assert updated.email == "ada@lovelace.org"  # type: ignore[attr-defined]
    assert updated.name is None  # type: ignore[attr-defined]
    assert updated.tax_rate_bps is None  # type: ignore[attr-defined]
    assert updated.metadata is None  # type: ignore[attr-defined]
    assert customer.email == "ada@lovelace.org"
    assert customer.name == "Ada"


def test_updating_every_field_changes_every_field() -> None:
    customer = make_customer()
    customer.collect_events()
    assert customer.update(
        **no_changes(email="x@y.io", name="Grace", tax_rate_bps=550, metadata={"tier": "gold"})
    )
    assert event_names(customer) == ["Updated"]
    assert (customer.email, customer.name, customer.tax_rate_bps, customer.metadata) == (
        "x@y.io",
        "Grace",
        550,
        {"tier": "gold"},
    )


def test_metadata_can_be_emptied() -> None:
    customer = make_customer()
    assert customer.update(**no_changes(metadata={}))
    assert customer.metadata == {}


def test_an_update_that_changes_nothing_records_nothing() -> None:
    customer = make_customer()
    customer.collect_events()
    assert customer.update(**no_changes()) is False
    assert (
        customer.update(
            **no_changes(email="ada@example.com", name="Ada", tax_rate_bps=2000, metadata={"segment": "smb"})
        )
        is False
    )
    assert customer.collect_events() == []


def test_updating_with_an_invalid_email_is_refused() -> None:
    customer = make_customer()
    assert_refused(customer, InvalidValue, lambda: customer.update(**no_changes(email="nope")))


def test_updating_with_an_invalid_tax_rate_is_refused() -> None:
    customer = make_customer()
    error = assert_refused(customer, InvalidValue, lambda: customer.update(**no_changes(tax_rate_bps=-5)))
    assert error.field == "tax_rate_bps"


def test_updating_an_archived_customer_is_refused() -> None:
    customer = make_customer()
    customer.archive(occurred_at=LATER)
    error = assert_refused(customer, CustomerArchived, lambda: customer.update(**no_changes(name="Grace")))
    assert error.code == "customer_archived"


# ---------------------------------------------------------------- archive


def test_archiving_records_archived_at_the_business_time() -> None:
    customer = make_customer()
    customer.collect_events()
    customer.archive(occurred_at=LATER)
    assert event_names(customer) == ["Archived"]
    assert customer.is_archived
    assert customer.archived_at == LATER


def test_check_not_archived_passes_for_a_live_customer_and_refuses_an_archived_one() -> None:
    customer = make_customer()
    customer.check_not_archived()
    customer.archive(occurred_at=LATER)
    with pytest.raises(CustomerArchived):
        customer.check_not_archived()


def test_archiving_an_archived_customer_is_refused() -> None:
    customer = make_customer()
    customer.archive(occurred_at=LATER)
    assert_refused(customer, CustomerArchived, lambda: customer.archive(occurred_at=at(2025, 4, 1)))
    assert customer.archived_at == LATER


# ---------------------------------------------------------------- history


def test_a_customer_rebuilt_from_its_events_has_the_same_state() -> None:
    customer = make_customer()
    customer.update(**no_changes(email="x@y.io", metadata={"tier": "gold"}))
    customer.update(**no_changes(tax_rate_bps=700))
    customer.archive(occurred_at=LATER)
    copy = assert_rebuilds_identically(customer)
    assert copy.email == "x@y.io"
    assert copy.tax_rate_bps == 700
    assert copy.archived_at == LATER
    assert copy.version == 4
