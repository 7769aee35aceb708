"""Business time: the window every recorded `occurred_at` must lie in.

Nothing is recorded before the ledger's epoch (2000-01-01) nor in the future: a moment may be at
most `MAX_AHEAD` past the ledger's now (a test clock's now where one moved it), which leaves room
for clients whose clocks run a little fast. Every path checks it (commands, CloudEvents, Stripe,
adapters), so no accepted event can carry a moment that later arithmetic cannot handle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.errors import TimeOutOfRange

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
MAX_AHEAD = timedelta(minutes=5)


def check_business_time(moment: datetime, now: datetime, field: str = "effective_at") -> datetime:
    """`moment` in UTC if it lies in [EPOCH, now + MAX_AHEAD]; else TimeOutOfRange naming `field`.
    A naive moment is read as UTC."""
    if moment.tzinfo is not UTC:  # (ingest checks every event of a batch: most are in UTC)
        if moment.tzinfo is None or moment.utcoffset() is None:
            moment = moment.replace(tzinfo=UTC)
        try:
            moment = moment.astimezone(UTC)
        except OverflowError:  # year 1 east of UTC, year 9999 west of it: outside any window
            raise TimeOutOfRange(f"{field} {moment.isoformat()} is out of range", field=field) from None
    if moment < EPOCH:
        raise TimeOutOfRange(f"{field} {moment.isoformat()} is before {EPOCH.date()}", field=field)
    if moment > now + MAX_AHEAD:
        raise TimeOutOfRange(
            f"{field} {moment.isoformat()} is in the future (the ledger's now is {now.isoformat()})",
            field=field,
        )
    return moment
