"""Dunning (SPEC 8) on the invoice, pure: the retry schedule after a failed automatic payment,
the reminders around a sent invoice's due date, the final action, and a payment stopping it."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from domain.dunning import (
    CHARGE_AUTOMATICALLY,
    EXHAUSTED,
    REMINDING,
    RETRYING,
    SEND_INVOICE,
    STOPPED,
    DunningPolicy,
)
from domain.invoice import Invoice
from tests.unit.factories import T0, add_line, assert_rebuilds_identically, at, draft_invoice

POLICY = DunningPolicy()
DUE = at(2025, 2, 14).date()


def finalized(method: str, policy: DunningPolicy = POLICY) -> Invoice:
    invoice = draft_invoice()
    add_line(invoice, unit_amount=1000)
    invoice.finalize(
        number="INV-000001", due_date=DUE, occurred_at=T0, collection_method=method, dunning=policy
    )
    return invoice


def steps(invoice: Invoice) -> list[tuple[int, str, object]]:
    return [
        (e.step, e.action, e.scheduled_at)  # type: ignore[attr-defined]
        for e in invoice.collect_events()
        if type(e).__name__ == "DunningStepTaken"
    ]


def test_the_settings_days_become_a_policy_and_bad_ones_are_refused() -> None:
    assert DunningPolicy.parse("1, 3,5,7", "-3,1,7,14", "none") == DunningPolicy(
        (1, 3, 5, 7), (-3, 1, 7, 14), "none"
    )
    assert DunningPolicy.parse("", "", "mark_uncollectible").retry_days == ()
    for retry, remind, final in (("1,x", "", "none"), ("0", "", "none"), ("", "", "shout")):
        with pytest.raises(ValueError):
            DunningPolicy.parse(retry, remind, final)


def test_a_sent_invoice_is_reminded_on_the_days_around_its_due_date_then_the_final_action() -> None:
    invoice = finalized(SEND_INVOICE)
    assert invoice.dunning is not None and invoice.dunning["state"] == REMINDING
    due = at(2025, 2, 14)
    assert invoice.next_due_at == due - timedelta(days=3)
    invoice.advance(due + timedelta(days=30))
    assert steps(invoice) == [
        (1, "reminder", due - timedelta(days=3)),
        (2, "reminder", due + timedelta(days=1)),
        (3, "reminder", due + timedelta(days=7)),
        (4, "reminder", due + timedelta(days=14)),
        (5, "final", due + timedelta(days=14)),
    ]
    assert invoice.dunning["state"] == EXHAUSTED and invoice.next_due_at is None


def test_a_step_is_taken_only_once_it_is_due() -> None:
    invoice = finalized(SEND_INVOICE)
    due = at(2025, 2, 14)
    assert invoice.advance(due - timedelta(days=3, seconds=1)) == 0
    assert invoice.advance(due) == 1
    assert invoice.advance(due) == 0
    assert invoice.next_due_at == due + timedelta(days=1)


def test_a_reminder_that_would_come_before_the_invoice_was_issued_is_not_sent() -> None:
    invoice = draft_invoice()
    add_line(invoice)
    invoice.finalize(
        number="INV-1", due_date=T0.date(), occurred_at=T0, collection_method=SEND_INVOICE, dunning=POLICY
    )
    assert invoice.dunning is not None
    assert invoice.dunning["schedule"][0] == (T0 + timedelta(days=1)).isoformat()


def test_a_paid_invoice_stops_its_reminders() -> None:
    invoice = finalized(SEND_INVOICE)
    invoice.apply_payment(payment_id=uuid4(), amount=1000, occurred_at=T0 + timedelta(days=2))
    assert invoice.dunning is not None and invoice.dunning["state"] == STOPPED
    assert invoice.next_due_at is None and invoice.advance(T0 + timedelta(days=90)) == 0


def test_an_automatic_invoice_retries_on_the_days_after_its_first_failure() -> None:
    invoice = finalized(CHARGE_AUTOMATICALLY)
    assert invoice.dunning is None and invoice.next_due_at is None
    failed_at = T0 + timedelta(minutes=5)
    invoice.record_failed_payment(payment_id=uuid4(), occurred_at=failed_at, policy=POLICY)
    assert invoice.dunning is not None and invoice.dunning["state"] == RETRYING
    assert invoice.next_due_at == failed_at + timedelta(days=1)
    invoice.advance(failed_at + timedelta(days=7))
    assert [(n, action, when - failed_at) for n, action, when in steps(invoice)] == [
        (1, "retry", timedelta(days=1)),
        (2, "retry", timedelta(days=3)),
        (3, "retry", timedelta(days=5)),
        (4, "retry", timedelta(days=7)),
    ]
    # Every retry made: the attempt after the last one failing exhausts the schedule.
    assert invoice.dunning["state"] == RETRYING and invoice.next_due_at is None
    invoice.record_failed_payment(
        payment_id=uuid4(), occurred_at=failed_at + timedelta(days=7, hours=1), policy=POLICY
    )
    events = invoice.collect_events()
    final = [e for e in events if type(e).__name__ == "DunningStepTaken"]
    assert [(e.action, e.final_action) for e in final] == [("final", "cancel_subscription")]  # type: ignore[attr-defined]
    assert invoice.dunning["state"] == EXHAUSTED and invoice.payment_failures == 2


def test_a_success_between_retries_stops_dunning_and_leaves_no_step_due() -> None:
    invoice = finalized(CHARGE_AUTOMATICALLY)
    invoice.record_failed_payment(payment_id=uuid4(), occurred_at=T0, policy=POLICY)
    invoice.advance(T0 + timedelta(days=1))
    invoice.apply_payment(payment_id=uuid4(), amount=1000, occurred_at=T0 + timedelta(days=2))
    assert invoice.dunning is not None and invoice.dunning["state"] == STOPPED
    assert invoice.next_due_at is None
    # A failure reported after the invoice was paid changes nothing.
    invoice.record_failed_payment(payment_id=uuid4(), occurred_at=T0 + timedelta(days=2), policy=POLICY)
    assert invoice.payment_failures == 1


def test_without_retry_days_the_first_failure_takes_the_final_action() -> None:
    policy = DunningPolicy(retry_days=(), final_action="mark_uncollectible")
    invoice = finalized(CHARGE_AUTOMATICALLY, policy)
    invoice.record_failed_payment(payment_id=uuid4(), occurred_at=T0, policy=policy)
    assert invoice.dunning is not None and invoice.dunning["state"] == EXHAUSTED
    assert invoice.dunning["final_action"] == "mark_uncollectible"


def test_the_schedule_is_the_one_recorded_when_dunning_started_whatever_the_settings_now() -> None:
    invoice = finalized(SEND_INVOICE, DunningPolicy(reminder_days=(5,)))
    rebuilt = assert_rebuilds_identically(invoice)
    assert rebuilt.dunning == invoice.dunning
    assert rebuilt.next_due_at == at(2025, 2, 19)
