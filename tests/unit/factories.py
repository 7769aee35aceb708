"""Builders and assertions shared by the domain unit tests. Pure: no I/O, no clock."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID, uuid4

import pytest

from domain.alert import Alert
from domain.customer import Customer
from domain.errors import DomainError
from domain.invoice import Invoice
from domain.payment import Payment
from domain.plan import Plan
from domain.subscription import Subscription

A = TypeVar("A")


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A UTC business moment."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


T0 = at(2025, 1, 31)


def half_even_oracle(numerator: int, denominator: int) -> int:
    """Round-half-even of numerator/denominator by long division, independent of Fraction."""
    if denominator < 0:
        numerator, denominator = -numerator, -denominator
    quotient, remainder = divmod(numerator, denominator)  # floor division, 0 <= remainder < d
    twice = 2 * remainder
    if twice < denominator:
        return quotient
    if twice > denominator:
        return quotient + 1
    return quotient if quotient % 2 == 0 else quotient + 1


def event_names(aggregate: Any) -> list[str]:
    """Collect the aggregate's pending events and return their class names, in order."""
    return [type(e).__name__ for e in aggregate.collect_events()]


def replay(events: list[Any]) -> Any:
    """Rebuild an aggregate from its events, as the event store would."""
    aggregate = None
    for domain_event in events:
        aggregate = domain_event.mutate(aggregate)
    return aggregate


def assert_rebuilds_identically(aggregate: Any) -> Any:
    """Collect every event of a never-drained aggregate and check a replay equals it."""
    events = aggregate.collect_events()
    assert events, "the aggregate recorded nothing"
    copy_ = replay(events)
    assert type(copy_) is type(aggregate)
    assert vars(copy_) == vars(aggregate)
    return copy_


def assert_refused(aggregate: Any, error: type[DomainError], command: Callable[[], object]) -> DomainError:
    """The command raises `error`, records no event and leaves the state untouched."""
    aggregate.collect_events()
    before = copy.deepcopy(vars(aggregate))
    with pytest.raises(error) as caught:
        command()
    assert type(caught.value) is error, f"expected {error.__name__}, got {caught.type.__name__}"
    assert aggregate.collect_events() == []
    assert vars(aggregate) == before
    return caught.value


def make_customer(**overrides: Any) -> Customer:
    fields: dict[str, Any] = {
        "external_id": "cus_1",
        "email": "ada@example.com",
        "name": "Ada",
        "currency": "EUR",
        "tax_rate_bps": 2000,
        "metadata": {"segment": "smb"},
        "occurred_at": T0,
    }
    fields.update(overrides)
    return Customer.register(**fields)


def plan_terms(**overrides: Any) -> dict[str, Any]:
    terms: dict[str, Any] = {
        "name": "Pro",
        "currency": "EUR",
        "amount": 2900,
        "interval": "month",
        "interval_count": 1,
        "trial_days": 0,
        "quotas": {},
        "usage_prices": {},
    }
    terms.update(overrides)
    return terms


def make_plan(code: str = "pro", **overrides: Any) -> Plan:
    occurred_at = overrides.pop("occurred_at", T0)
    return Plan.define(code=code, occurred_at=occurred_at, **plan_terms(**overrides))


def start_subscription(
    plan: Plan | None = None,
    *,
    quantity: int = 1,
    trial_days: int | None = None,
    occurred_at: datetime = T0,
    customer_id: UUID | None = None,
) -> Subscription:
    return Subscription.start(
        customer_id=customer_id or uuid4(),
        plan=plan or make_plan(),
        quantity=quantity,
        trial_days=trial_days,
        occurred_at=occurred_at,
    )


def draft_invoice(
    *, tax_rate_bps: int = 0, discount: int = 0, currency: str = "EUR", **overrides: Any
) -> Invoice:
    fields: dict[str, Any] = {
        "customer_id": uuid4(),
        "subscription_id": None,
        "currency": currency,
        "tax_rate_bps": tax_rate_bps,
        "discount": discount,
        "occurred_at": T0,
    }
    fields.update(overrides)
    return Invoice.draft(**fields)


def add_line(invoice: Invoice, *, quantity: int = 1, unit_amount: int = 1000, **overrides: Any) -> None:
    fields: dict[str, Any] = {
        "description": "Pro plan",
        "quantity": quantity,
        "unit_amount": unit_amount,
        "period_start": None,
        "period_end": None,
        "occurred_at": T0,
    }
    fields.update(overrides)
    invoice.add_line(**fields)


def open_invoice(*, unit_amount: int = 1000, quantity: int = 1, **draft: Any) -> Invoice:
    """A finalized invoice with one line, due two weeks after T0."""
    invoice = draft_invoice(**draft)
    add_line(invoice, quantity=quantity, unit_amount=unit_amount)
    invoice.finalize(number="INV-000001", due_date=at(2025, 2, 14).date(), occurred_at=T0)
    return invoice


def initiate_payment(amount: int = 1000, **overrides: Any) -> Payment:
    fields: dict[str, Any] = {
        "customer_id": uuid4(),
        "invoice_id": None,
        "amount": amount,
        "currency": "EUR",
        "provider_reference": "pi_123",
        "occurred_at": T0,
    }
    fields.update(overrides)
    return Payment.initiate(**fields)


def raise_alert(**overrides: Any) -> Alert:
    fields: dict[str, Any] = {
        "alert_id": uuid4(),
        "alert_type": "payment_failed",
        "severity": "critical",
        "subject": "invoice:INV-000001",
        "message": "card declined",
        "customer_id": uuid4(),
        "occurred_at": T0,
    }
    fields.update(overrides)
    return Alert.raise_alert(**fields)
