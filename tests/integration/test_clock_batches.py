"""The ledger's clock bills a day in batches, each computed while the one before is being written:
every invoice is numbered once and the numbers have no gap, also when batches share customers
and when two clocks run over the same subscriptions at once (batches that fail are done again one
aggregate at a time)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

from application import commands as c
from domain.clock import TestClock
from infra.bootstrap import Container, bootstrap
from infra.settings import Settings

CUSTOMERS = 24
SHARING = 8  # customers with a second subscription, so that batches share customers


@pytest.fixture
def clocks(settings: Settings, database_url: str) -> Iterator[tuple[Container, Container]]:
    clock_settings = settings.model_copy(update={"allow_test_clock": True})
    first = bootstrap(clock_settings, database_url, run_projection=False)
    second = bootstrap(clock_settings, database_url, run_projection=False)
    try:
        yield first, second
    finally:
        second.close()
        first.close()


def test_a_billing_day_in_batches_numbers_every_invoice_once_without_gaps(
    clocks: tuple[Container, Container],
) -> None:
    first, second = clocks
    ledger = first.ledger
    now = ledger.now()
    ctx = c.CommandContext(occurred_at=now)
    ledger.define_plan(c.DefinePlan("pro", "Pro", "EUR", 2000, "month"), ctx)
    subscriptions = []
    for n in range(CUSTOMERS):
        customer = ledger.register_customer(c.RegisterCustomer(f"c{n}", f"c{n}@acme.io", "EUR"), ctx)
        for _ in range(2 if n < SHARING else 1):
            started = ledger.start_subscription(c.StartSubscription(customer.resource_id, "pro"), ctx)
            subscriptions.append(started.resource_id)
    ledger.save(TestClock.start(to=now + timedelta(days=95), now=now))

    # Batches of 3: many batches in flight, customers shared between them, two clocks at once.
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda built: built.ledger.advance_due(limit=3), [first, second]))

    assert sum(run.advanced for run in runs) >= len(subscriptions)
    renewals = Counter(
        (row["originator_id"], row["occurred_at"]) for row in events(first, "Subscription.Renewed")
    )
    assert len(renewals) == len(subscriptions) * 3 and set(renewals.values()) == {1}
    finalized = [row["payload"] for row in events(first, "Invoice.Finalized")]
    numbers = sorted(int(p["number"].rsplit("-", 1)[1]) for p in finalized)
    assert len(finalized) == len(subscriptions) * 4  # the first period's invoice, then 3 renewals
    assert numbers == list(range(1, len(numbers) + 1))
    assigned = [row["originator_version"] for row in events(first, "InvoiceNumberAssigned")]
    assert sorted(assigned) == numbers
    assert first.ledger.advance_due().advanced == 0


def events(container: Container, event_type: str) -> list[dict[str, Any]]:
    with container.pool.connection() as conn:
        rows: Any = conn.execute(
            "SELECT originator_id, originator_version, occurred_at,"
            " convert_from(state, 'UTF8')::jsonb AS payload FROM ledger_events WHERE event_type = %s"
            " ORDER BY notification_id",
            (event_type,),
        ).fetchall()
    return list(rows)
