"""The ledger's daily clock. Each UTC day is recorded once as an event of its own, so that what
the clock drives (trials converting, scheduled cancellations ending, periods renewing, invoices
becoming overdue) is caused by something in the log: a replay sees the same time."""

from __future__ import annotations

from datetime import date, datetime

from eventsourcing.domain import event

from domain import ids
from domain.base import LedgerAggregate


class ClockTick(LedgerAggregate):
    @classmethod
    def record(cls, *, day: date, occurred_at: datetime) -> ClockTick:
        return cls._created_with_id(ids.clock_tick_id(day), "Ticked", day=day, occurred_at=occurred_at)

    @event("Ticked")
    def __init__(self, day: date, occurred_at: datetime) -> None:
        self.day = day
        self.occurred_at = occurred_at
