"""The ledger's clocks.

`ClockTick`: each UTC day is recorded once as an event of its own, so that what the daily clock
drives (invoices becoming overdue) is caused by something in the log: a replay sees the same time.

`TestClock`: with `LEDGER_ALLOW_TEST_CLOCK=true` (never in production) an admin may move the
ledger's now forward, never back. The ledger's now is then the later of the wall clock and the
moment the test clock was moved to: time stands still at that moment until the wall clock passes
it, so what a test computes from it does not drift while the test runs."""

from __future__ import annotations

from datetime import date, datetime

from eventsourcing.domain import event

from domain import ids
from domain.base import LedgerAggregate
from domain.errors import InvalidTransition


class ClockTick(LedgerAggregate):
    @classmethod
    def record(cls, *, day: date, occurred_at: datetime) -> ClockTick:
        return cls._created_with_id(ids.clock_tick_id(day), "Ticked", day=day, occurred_at=occurred_at)

    @event("Ticked")
    def __init__(self, day: date, occurred_at: datetime) -> None:
        self.day = day
        self.occurred_at = occurred_at


class TestClock(LedgerAggregate):
    __test__ = False  # not a pytest test class

    @classmethod
    def start(cls, *, to: datetime, now: datetime) -> TestClock:
        check_forward(to, now)
        return cls._created_with_id(ids.TEST_CLOCK_ID, "Started", to=to, occurred_at=to)

    @event("Started")
    def __init__(self, to: datetime, occurred_at: datetime) -> None:
        self.to = to

    def advance(self, *, to: datetime, now: datetime) -> None:
        check_forward(to, now)
        self._advance(to=to, occurred_at=to)

    @event("Advanced")
    def _advance(self, to: datetime, occurred_at: datetime) -> None:
        self.to = to


def check_forward(to: datetime, now: datetime) -> None:
    if to <= now:
        raise InvalidTransition(
            f"the test clock moves forward only: the ledger's now is {now.isoformat()}", field="advance_to"
        )
