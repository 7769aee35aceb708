"""Domain additions used by ingest: provider-finalized invoices and usage records that keep
their sender's key and content fingerprint."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import ids
from domain.errors import InvalidValue, InvoiceNotDraft
from domain.invoice import OPEN, PAID, Invoice
from domain.usage import UsageRecord
from tests.unit.factories import (
    T0,
    add_line,
    assert_rebuilds_identically,
    assert_refused,
    at,
    draft_invoice,
    event_names,
)

DUE = at(2025, 2, 14).date()


def finalize_external(invoice: Invoice, **overrides: Any) -> None:
    fields: dict[str, Any] = {
        "number": "ACME-0001",
        "due_date": DUE,
        "subtotal": 2000,
        "discount": 200,
        "tax": 360,
        "total": 2160,
        "occurred_at": T0,
    }
    fields.update(overrides)
    invoice.finalize_external(**fields)


def test_provider_finalized_invoice_keeps_the_providers_number_and_amounts() -> None:
    invoice = draft_invoice(tax_rate_bps=0)
    add_line(invoice, unit_amount=2000)
    finalize_external(invoice)
    assert invoice.status == OPEN
    assert invoice.number == "ACME-0001"
    assert (invoice.subtotal, invoice.discount, invoice.tax, invoice.total) == (2000, 200, 360, 2160)
    assert invoice.amount_remaining == 2160
    assert event_names(invoice)[-1] == "Finalized"


def test_provider_finalized_invoice_of_zero_is_paid_at_once() -> None:
    invoice = draft_invoice()
    finalize_external(invoice, subtotal=0, discount=0, tax=0, total=0)
    assert invoice.status == PAID
    assert_rebuilds_identically(invoice)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"total": 2161}, "total"),
        ({"tax": -1, "total": 1799}, "tax"),
        ({"discount": 2001, "total": 359}, "discount"),
        ({"number": " "}, "number"),
        ({"due_date": at(2025, 1, 30).date()}, "due_date"),
    ],
)
def test_provider_figures_that_do_not_add_up_are_refused(overrides: dict[str, Any], field: str) -> None:
    invoice = draft_invoice()
    add_line(invoice, unit_amount=2000)
    error = assert_refused(invoice, InvalidValue, lambda: finalize_external(invoice, **overrides))
    assert error.field == field


def test_an_open_invoice_cannot_be_finalized_again_by_a_provider() -> None:
    invoice = draft_invoice()
    add_line(invoice, unit_amount=2000)
    finalize_external(invoice)
    assert_refused(invoice, InvoiceNotDraft, lambda: finalize_external(invoice, number="ACME-0002"))


def test_usage_record_keeps_its_senders_source_and_content_fingerprint() -> None:
    usage = UsageRecord.record(
        record_id=ids.usage_record_id("saas-1", "evt-1"),
        customer_id=uuid4(),
        metric="api_calls",
        value="12",
        idempotency_key="evt-1",
        properties={"region": "eu"},
        occurred_at=T0,
        source="saas-1",
        content_hash="abc",
    )
    assert (usage.source, usage.idempotency_key, usage.content_hash) == ("saas-1", "evt-1", "abc")
    copy = assert_rebuilds_identically(usage)
    assert copy.content_hash == "abc"


def test_usage_record_metric_longer_than_200_characters_is_refused() -> None:
    with pytest.raises(InvalidValue) as caught:
        UsageRecord.record(
            record_id=uuid4(),
            customer_id=uuid4(),
            metric="m" * 201,
            value=1,
            idempotency_key="k",
            properties={},
            occurred_at=T0,
        )
    assert caught.value.field == "metric"


def test_ingested_event_ids_share_one_space_per_source_and_id() -> None:
    assert ids.ingested_event_id("s", "1") == ids.usage_record_id("s", "1")
    assert ids.ingested_event_id("s", "1") != ids.ingested_event_id("t", "1")
    assert ids.stripe_object_id("sub_1") != ids.stripe_sync_id("sub_1")


def test_provider_objects_are_mirrored_under_the_id_derived_from_their_name() -> None:
    from domain.payment import Payment
    from domain.subscription import Subscription
    from tests.unit.factories import make_plan

    sub_id, invoice_id, payment_id = (ids.stripe_object_id(n) for n in ("sub_1", "in_1", "pi_1"))
    sub = Subscription.start(
        customer_id=uuid4(),
        plan=make_plan(),
        quantity=2,
        trial_days=0,
        occurred_at=T0,
        subscription_id=sub_id,
    )
    invoice = draft_invoice(invoice_id=invoice_id)
    payment = Payment.initiate(
        customer_id=uuid4(),
        invoice_id=invoice_id,
        amount=100,
        currency="EUR",
        provider_reference="pi_1",
        occurred_at=T0,
        payment_id=payment_id,
    )
    assert (sub.id, invoice.id, payment.id) == (sub_id, invoice_id, payment_id)
    for aggregate in (sub, invoice, payment):
        assert assert_rebuilds_identically(aggregate).id == aggregate.id
    assert Payment.initiate(
        customer_id=uuid4(),
        invoice_id=None,
        amount=1,
        currency="EUR",
        provider_reference=None,
        occurred_at=T0,
    ).id not in (sub_id, invoice_id, payment_id)


@given(st.text())
def test_derived_ids_are_rfc_4122_version_5_uuids_of_the_ledger_namespace(name: str) -> None:
    import uuid

    assert ids._uuid5(name) == uuid.uuid5(ids.LEDGER_NAMESPACE, name)
    assert ids.customer_id(name) == uuid.uuid5(ids.LEDGER_NAMESPACE, f"customer:{name}")
