"""Invoice lines from terms and usage (SPEC 7): fee in advance, usage rated per metric with its
lineage, adjustments for late usage of any age; pure."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID, uuid4

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.invoicing import (
    BilledUsage,
    FeeTerms,
    UsageFact,
    adjustment_line,
    fee_line,
    records_digest,
    usage_lines,
)

INVOICE = UUID("00000000-0000-0000-0000-000000000001")
START = datetime(2025, 3, 1, tzinfo=UTC)
END = datetime(2025, 4, 1, tzinfo=UTC)
GRADUATED = {
    "model": "graduated",
    "tiers": [
        {"up_to": 100, "unit_amount": "100"},
        {"up_to": 200, "unit_amount": "50"},
        {"up_to": None, "unit_amount": "10"},
    ],
}


def record(value: int, day: int, metric: str = "calls", position: int = 1) -> UsageFact:
    return UsageFact(uuid4(), position, metric, START + timedelta(days=day), Decimal(value))


def test_the_fee_is_billed_in_advance_as_amount_times_quantity_with_its_terms() -> None:
    line = fee_line(INVOICE, FeeTerms(uuid4(), "pro", "Pro", 2900, 3), START, END)
    assert (line.kind, line.amount, line.quantity, line.unit_amount) == ("fee", 8700, 3, 2900)
    assert (line.period_start, line.period_end) == (START, END)
    assert line.source["plan_code"] == "pro"


def test_usage_is_one_line_per_priced_metric_rated_once_with_its_lineage() -> None:
    records = [record(100, 1, position=10), record(150, 2, position=12), record(7, 3, "storage", 13)]
    (line,) = usage_lines(
        INVOICE,
        prices={"calls": GRADUATED},
        aggregations={},
        records=records,
        period_start=START,
        period_end=END,
        as_of=20,
    )
    assert (line.metric, line.quantity, line.amount) == ("calls", Decimal(250), 15500)
    assert line.source == {
        "records": 2,
        "first_position": 10,
        "last_position": 12,
        "records_digest": hashlib.sha256(
            "\n".join(sorted(str(r.record_id) for r in records[:2])).encode()
        ).hexdigest(),
        "as_of_position": 20,
    }


def test_a_metric_without_usage_in_the_period_bills_nothing() -> None:
    outside = [record(100, -3), record(100, 40)]
    assert (
        usage_lines(
            INVOICE,
            prices={"calls": GRADUATED},
            aggregations={},
            records=outside,
            period_start=START,
            period_end=END,
        )
        == []
    )


def test_the_quota_aggregation_decides_the_quantity() -> None:
    records = [record(5, 1, position=1), record(9, 2, position=2), record(3, 3, position=3)]
    per_unit = {"model": "per_unit", "unit_amount": "10"}
    amounts = {
        aggregation: usage_lines(
            INVOICE,
            prices={"calls": per_unit},
            aggregations={"calls": aggregation},
            records=records,
            period_start=START,
            period_end=END,
        )[0].amount
        for aggregation in ("sum", "max", "last")
    }
    assert amounts == {"sum": 170, "max": 90, "last": 30}


def test_late_usage_is_billed_as_the_difference_of_the_re_rated_period_so_tiers_stay_right() -> None:
    # 150 were billed (100 × 100 + 50 × 50 = 12500); 100 more arrive: 250 re-rated is 15500.
    billed = BilledUsage("calls", START, END, 12_500, "INV-000004")
    records = [record(150, 1, position=1), record(100, 5, position=9)]
    line = adjustment_line(INVOICE, billed=billed, price=GRADUATED, aggregation="sum", records=records)
    assert line is not None
    assert (line.kind, line.amount, line.metric) == ("adjustment", 3000, "calls")
    assert "INV-000004" in line.description
    assert (line.period_start, line.period_end) == (START, END)


def test_a_correction_downwards_is_a_negative_adjustment_and_nothing_changed_is_no_line() -> None:
    billed = BilledUsage("calls", START, END, 15_500, "INV-000004")
    corrected = [record(150, 1)]
    line = adjustment_line(INVOICE, billed=billed, price=GRADUATED, aggregation="sum", records=corrected)
    assert line is not None and line.amount == 12_500 - 15_500
    same = [record(250, 1)]
    assert adjustment_line(INVOICE, billed=billed, price=GRADUATED, aggregation="sum", records=same) is None


def test_line_ids_derive_from_the_invoice_and_what_the_line_is() -> None:
    terms = FeeTerms(UUID(int=7), "pro", "Pro", 100, 1)
    assert fee_line(INVOICE, terms, START, END).line_id == fee_line(INVOICE, terms, START, END).line_id
    assert fee_line(INVOICE, terms, START, END).line_id != fee_line(UUID(int=2), terms, START, END).line_id


@settings(max_examples=200)
@given(st.lists(st.uuids(), min_size=1, max_size=20))
def test_the_records_digest_depends_on_which_records_not_their_order(ids: list[UUID]) -> None:
    facts = [UsageFact(i, n, "calls", START, Decimal(1)) for n, i in enumerate(ids)]
    assert records_digest(facts) == records_digest(list(reversed(facts)))
    assert (
        records_digest(facts) == hashlib.sha256("\n".join(sorted(str(i) for i in ids)).encode()).hexdigest()
    )
