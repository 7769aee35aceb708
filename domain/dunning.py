"""Dunning: what the ledger does about an invoice that is not paid (SPEC section 8).

Two schedules, both fixed when dunning starts and recorded in the event that starts it, so a
later change of settings never rewrites an invoice's past:
- an automatically collected invoice whose payment failed is *retrying*: a new payment attempt on
  each day of `retry_days` after the first failure (day 3 is 3 × 24 h after it); when the attempt
  made after the last retry day fails too, the schedule is exhausted;
- an invoice sent to the customer is *reminding*: a reminder on each day of `reminder_days`
  relative to its due date (the start of the due date, UTC; -3 is three days before); once the
  last reminder is sent the schedule is exhausted.
An exhausted schedule takes the final action (`cancel_subscription`, `mark_uncollectible` or
`none`) as its last step. Paying the invoice (or voiding it, or writing it off) stops dunning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from domain.errors import InvalidValue

RETRYING, REMINDING, EXHAUSTED, STOPPED = "retrying", "reminding", "exhausted", "stopped"
RETRY, REMINDER, FINAL = "retry", "reminder", "final"
SEND_INVOICE, CHARGE_AUTOMATICALLY = "send_invoice", "charge_automatically"
COLLECTION_METHODS = (SEND_INVOICE, CHARGE_AUTOMATICALLY)
FINAL_ACTIONS = ("cancel_subscription", "mark_uncollectible", "none")
MAX_SCHEDULE_DAYS = 366


def check_collection_method(method: str) -> None:
    if method not in COLLECTION_METHODS:
        raise InvalidValue(
            f"collection_method is one of {', '.join(COLLECTION_METHODS)}", field="collection_method"
        )


@dataclass(frozen=True)
class DunningPolicy:
    """The ledger's settings for dunning (LEDGER_DUNNING_RETRY_DAYS, LEDGER_REMINDER_DAYS,
    LEDGER_DUNNING_FINAL_ACTION)."""

    retry_days: tuple[int, ...] = (1, 3, 5, 7)
    reminder_days: tuple[int, ...] = (-3, 1, 7, 14)
    final_action: str = "cancel_subscription"

    def __post_init__(self) -> None:
        if self.final_action not in FINAL_ACTIONS:
            raise ValueError(f"the final action is one of {', '.join(FINAL_ACTIONS)}")
        if any(d <= 0 or d > MAX_SCHEDULE_DAYS for d in self.retry_days):
            raise ValueError(f"retry days are between 1 and {MAX_SCHEDULE_DAYS}")
        if any(abs(d) > MAX_SCHEDULE_DAYS for d in self.reminder_days):
            raise ValueError(f"reminder days are between -{MAX_SCHEDULE_DAYS} and {MAX_SCHEDULE_DAYS}")

    @classmethod
    def parse(cls, retry_days: str, reminder_days: str, final_action: str) -> DunningPolicy:
        """From the settings' comma-separated day lists ("1,3,5,7"; empty: no such steps)."""
        return cls(_days(retry_days), _days(reminder_days), final_action.strip())

    def retries_after(self, first_failure: datetime) -> list[datetime]:
        """When to try again, counted from the first failure, in order, each once."""
        return [first_failure + timedelta(days=d) for d in sorted(set(self.retry_days))]

    def reminders_for(self, due_date: date, not_before: datetime) -> list[datetime]:
        """When to remind the customer of an invoice due on `due_date`: relative to the start of
        the due date; a reminder that would fall before the invoice was issued is not sent."""
        due = datetime.combine(due_date, time(), tzinfo=UTC)
        moments = (due + timedelta(days=d) for d in sorted(set(self.reminder_days)))
        return [m for m in moments if m >= not_before]


def _days(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError as error:
        raise ValueError(f"days are comma-separated integers, not {text!r}") from error


@dataclass(frozen=True)
class Step:
    """One step taken: its 1-based number, what it does and when it fell due."""

    step: int
    action: str
    scheduled_at: datetime


def next_step(state: str, schedule: Sequence[datetime], taken: int) -> Step | None:
    """The step that falls due next on a schedule of which `taken` steps were taken: a retry or
    a reminder at its scheduled moment; after the last reminder, at the same moment, the final
    step. A retrying schedule's final step comes from a failed attempt, not from time."""
    if state == RETRYING and taken < len(schedule):
        return Step(taken + 1, RETRY, schedule[taken])
    if state == REMINDING:
        if taken < len(schedule):
            return Step(taken + 1, REMINDER, schedule[taken])
        if taken == len(schedule) and schedule:
            return Step(taken + 1, FINAL, schedule[-1])
    return None
