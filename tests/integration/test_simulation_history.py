"""The history a seed writes is part of the contract: benchmarks, demos and users' notes refer to
it. Its digest was taken from the simulation as it was before it was made fast (one append per
command); a faster way of writing must write exactly the same events, envelopes, payloads and
timers, in the same order: in one process, and with worker processes simulating chunks of
customers that the writing process relocates onto the log (invoice numbers, positions)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import sql

from application.ledger import Ledger
from application.simulation import Simulation
from infra.database import ensure_database, ensure_schema, event_store_env
from infra.settings import DatabaseAddress
from tests.integration.simulation_digest import history_digest

UNTIL = datetime(2025, 6, 1, tzinfo=UTC)
# 150 customers, 12 months, seed 4: 6,375 events holding every kind the simulation writes
# (reactivations and switches to yearly included). Taken from main at f0354fb, one append per
# command (before the add-on items, at 2ed6ca4, it was a0992094...: the fee a subscription
# records on each invoice gained its `items`).
EXPECTED_DIGEST = "e91a62a11f4eadd8af983a339562ffbe6fb6a3c5db500de790a61e0e7c8f8a0a"
EXPECTED_STATS = {
    "customers": 150, "customers_skipped": 0, "plans": 24, "subscriptions": 151,
    "trials_converted": 84, "trials_abandoned": 13, "upgrades": 13, "downgrades": 3,
    "quantity_changes": 22, "interval_switches": 2, "invoices": 575, "invoices_paid_on_time": 535,
    "invoices_paid_late": 22, "invoices_never_paid": 12, "invoices_open_at_end": 6,
    "failed_payments": 77, "retries": 66, "cancellations_at_period_end": 5,
    "cancellations_withdrawn": 1, "immediate_cancellations": 5, "involuntary_cancellations": 12,
    "reactivations": 1, "refunds": 11, "commands": 2798,
}  # fmt: skip


@pytest.mark.parametrize("workers", [0, 2], ids=["one process", "two worker processes"])
def test_a_seed_writes_the_history_it_always_wrote(database_url: str, workers: int) -> None:
    address = DatabaseAddress(database_url)
    ensure_database(address)
    schema = "simdigest_" + uuid.uuid4().hex[:8]
    ensure_schema(address, schema)
    ledger = Ledger(env=event_store_env(address, schema, 2))
    try:
        simulation = Simulation(
            ledger, customers=150, months=12, seed=4, until=UNTIL, workers=workers, chunk_customers=20
        )
        stats = simulation.run()
        assert ledger.store.head() == 6375
        assert stats.as_dict() == EXPECTED_STATS
        assert history_digest(address, schema) == EXPECTED_DIGEST
    finally:
        ledger.close()
        with psycopg.connect(address.conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
