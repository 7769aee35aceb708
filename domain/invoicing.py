"""What a subscription owes at a period boundary, as invoice lines (SPEC 7, "When invoices are
made", "Late usage", "Lineage"). Pure: the application loads the terms, prices and usage records
a period needs and these functions decide the lines.

At each period start a subscription is invoiced in advance for the new period's recurring fee
and in arrears for the usage of the period that just ended (one line per priced metric with
usage), with the proration lines waiting since the last invoice and an adjustment line for each
earlier period whose usage changed after it was billed. Every line says where it came from: a
fee line its subscription and terms, a usage line the number of its records, the positions of
the first and last and `records_digest` (sha256 of the sorted record ids). Line ids derive from
the invoice and what the line is, so the same log always yields the same lines."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid5

from domain.metrics import UsageValue, aggregate_usage
from domain.rating import exact_amount, rate

LINE_KINDS = ("fee", "usage", "proration", "adjustment", "manual")


@dataclass(frozen=True)
class UsageFact:
    """One usage record as billing sees it: its current value (a correction replaces it)."""

    record_id: UUID
    position: int
    metric: str
    occurred_at: datetime
    value: Decimal
    changed_at: int = 0  # the position of its last change (its recording or a correction)


@dataclass(frozen=True)
class Line:
    line_id: UUID
    kind: str
    description: str
    quantity: Decimal
    unit_amount: Decimal | None  # per unit, exact; None where no single unit price applies
    amount: int
    period_start: datetime | None = None
    period_end: datetime | None = None
    metric: str | None = None
    source: Mapping[str, Any] = field(default_factory=dict)

    def as_payload(self) -> dict[str, Any]:
        return {
            "line_id": str(self.line_id),
            "kind": self.kind,
            "description": self.description,
            "quantity": _text(self.quantity),
            "unit_amount": None if self.unit_amount is None else _text(self.unit_amount),
            "amount": self.amount,
            "period_start": self.period_start.isoformat() if self.period_start else None,
            "period_end": self.period_end.isoformat() if self.period_end else None,
            "metric": self.metric,
            "source": dict(self.source),
        }


def _text(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


def line_id(invoice_id: UUID, *parts: object) -> UUID:
    return uuid5(invoice_id, ":".join(str(p) for p in parts))


# ---------------------------------------------------------------------- the recurring fee


@dataclass(frozen=True)
class FeeTerms:
    subscription_id: UUID
    plan_code: str
    plan_name: str
    amount: int  # per period, per unit
    quantity: int
    item_id: UUID | None = None  # an add-on item's fee, beside the plan's (SPEC 10)


def fee_line(invoice_id: UUID, terms: FeeTerms, period_start: datetime, period_end: datetime) -> Line:
    """The period's recurring fee, billed in advance: amount × quantity, one line (one for the
    plan, one for each add-on item)."""
    of_item = {} if terms.item_id is None else {"item_id": str(terms.item_id)}
    return Line(
        line_id=line_id(invoice_id, "fee", terms.item_id or terms.subscription_id, period_start.isoformat()),
        kind="fee",
        description=f"{terms.plan_name} × {terms.quantity}",
        quantity=Decimal(terms.quantity),
        unit_amount=Decimal(terms.amount),
        amount=terms.amount * terms.quantity,
        period_start=period_start,
        period_end=period_end,
        source={"subscription_id": str(terms.subscription_id), "plan_code": terms.plan_code, **of_item},
    )


# ---------------------------------------------------------------------- usage


def records_digest(records: Iterable[UsageFact]) -> str:
    """sha256 over the sorted record ids, one per line: who recomputes it needs only the ids."""
    ids = sorted(str(r.record_id) for r in records)
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def usage_quantity(records: Sequence[UsageFact], aggregation: str) -> Decimal:
    values = [UsageValue(r.occurred_at, r.position, r.value) for r in records]
    return aggregate_usage(values, aggregation)


def rated_usage(
    price: Mapping[str, Any], aggregation: str, records: Sequence[UsageFact]
) -> tuple[Decimal, Decimal, int]:
    """(quantity, exact amount, amount) of a metric's records over a period."""
    quantity = usage_quantity(records, aggregation)
    return quantity, exact_amount(price, quantity), rate(price, quantity)


def lineage(records: Sequence[UsageFact], as_of: int | None = None) -> dict[str, Any]:
    """Where a usage line came from: its records (count, first and last position, digest), as
    the log stood at position `as_of` (corrections up to there count)."""
    positions = [r.position for r in records]
    found: dict[str, Any] = {
        "records": len(records),
        "first_position": min(positions),
        "last_position": max(positions),
        "records_digest": records_digest(records),
    }
    if as_of is not None:
        found["as_of_position"] = as_of
    return found


def usage_lines(
    invoice_id: UUID,
    *,
    prices: Mapping[str, Mapping[str, Any]],
    aggregations: Mapping[str, str],
    records: Sequence[UsageFact],
    period_start: datetime,
    period_end: datetime,
    as_of: int | None = None,
) -> list[Line]:
    """One line per priced metric with usage in the period (a metric without usage bills
    nothing), rated with the prices given (the plan's in force at the period's end); `as_of` is
    the log position the records were read at."""
    lines = []
    for metric in sorted(prices):
        of_metric = [r for r in records if r.metric == metric and period_start <= r.occurred_at < period_end]
        if not of_metric:
            continue
        quantity, exact, amount = rated_usage(prices[metric], aggregations.get(metric, "sum"), of_metric)
        lines.append(
            Line(
                line_id=line_id(invoice_id, "usage", metric, period_start.isoformat()),
                kind="usage",
                description=f"{metric}",
                quantity=quantity,
                unit_amount=(exact / quantity) if quantity else None,
                amount=amount,
                period_start=period_start,
                period_end=period_end,
                metric=metric,
                source=lineage(of_metric, as_of),
            )
        )
    return lines


@dataclass(frozen=True)
class BilledUsage:
    """What was billed so far for one metric and period (the usage line and adjustments)."""

    metric: str
    period_start: datetime
    period_end: datetime
    amount: int
    invoice_number: str | None  # the invoice that first billed it


def adjustment_line(
    invoice_id: UUID,
    *,
    billed: BilledUsage,
    price: Mapping[str, Any],
    aggregation: str,
    records: Sequence[UsageFact],
) -> Line | None:
    """Late usage of an already billed period, any age: the period's usage re-rated with
    everything now known, minus what was already billed for that metric and period (so tiers
    stay right). Positive, or negative for a correction downwards; None when nothing changed."""
    in_period = [
        r
        for r in records
        if r.metric == billed.metric and billed.period_start <= r.occurred_at < billed.period_end
    ]
    quantity, _, amount = (
        rated_usage(price, aggregation, in_period) if in_period else (Decimal(0), Decimal(0), 0)
    )
    difference = amount - billed.amount
    if difference == 0:
        return None
    start = billed.period_start.date().isoformat()
    end = billed.period_end.date().isoformat()
    of = f" (invoice {billed.invoice_number})" if billed.invoice_number else ""
    return Line(
        line_id=line_id(invoice_id, "adjustment", billed.metric, billed.period_start.isoformat()),
        kind="adjustment",
        description=f"{billed.metric}, {start} to {end}: late usage{of}",
        quantity=quantity,
        unit_amount=None,
        amount=difference,
        period_start=billed.period_start,
        period_end=billed.period_end,
        metric=billed.metric,
        source={
            **(lineage(in_period) if in_period else {"records": 0}),
            "adjusts_invoice": billed.invoice_number,
            "previously_billed": billed.amount,
        },
    )
