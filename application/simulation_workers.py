"""`ledger simulate` on several cores, writing the history one process would write.

Customers are independent but for two things of the whole log: invoice numbers (one gapless
sequence, in the order invoices are finalized) and log positions (a subscription records the
head it billed against, `usage_seen_position`). So worker processes simulate chunks of
consecutive customers into detached write batches (infra/write_behind.py) that pretend the log's
head is `RELOCATABLE_HEAD` and the numbering at 0, with invoice numbers under `RELOCATABLE_PREFIX`;
the writing process takes the chunks in customer order and relocates each onto the real head and
numbering as they stand when its turn comes: exactly the events one process would have appended.

A chunk whose customers needed anything else of the store (a worker cannot read what the writer
holds) comes back as failed, and the writer simulates it itself."""

from __future__ import annotations

import multiprocessing
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from application.ledger import Ledger
from domain import ids
from domain.invoice import invoice_number
from infra import heap
from infra.eventstore import NewStreamRow
from infra.write_behind import Detached, NeedsTheStore

# Far above any real head, and recognisable: a position a worker recorded is this plus its offset
# in the chunk. Fits a bigint.
RELOCATABLE_HEAD = 7_777_777_000_000_000_000
_HEAD_DIGITS = str(RELOCATABLE_HEAD)[:7].encode()
RELOCATABLE_PREFIX = "\u27e6"  # ⟦: a character no invoice prefix holds
_NUMBER = re.compile(re.escape(RELOCATABLE_PREFIX).encode() + rb"-(\d+)")
# The payload fields that hold a log position taken from the head.
_POSITION = re.compile(rb'"(usage_seen_position|as_of_position)":(\d+)')


class RelocationFailed(Exception):
    """A chunk's events hold a worker's stand-in that relocation does not know."""


@dataclass(frozen=True)
class WorkerSetup:
    env: dict[str, str]
    invoice_grace: timedelta
    customers: int
    months: int
    seed: int
    until: datetime


@dataclass(frozen=True)
class Chunk:
    customers: list[tuple[int, datetime]]  # (index, signup) of each customer, in order
    existing: frozenset[int]  # (indexes of) those already in the store: skipped


@dataclass(frozen=True)
class ChunkResult:
    events: list[NewStreamRow]
    timers: dict[UUID, datetime | None]
    stats: dict[str, int]

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled (from the worker to the writer) with its UUIDs as integers: the standard
        library pickles a UUID through Python-level `__getstate__`/`__setstate__`, which cost
        four times the rest of a row. Unpickled as it was: the same rows, the same UUIDs."""
        events = [
            (
                e.originator_id.int,
                *e[1:6],
                _int(e.customer_id),
                e.source,
                e.actor,
                _int(e.correlation_id),
                _int(e.causation_id),
                e.reason,
                e.schema_version,
            )
            for e in self.events
        ]
        timers = [(aggregate_id.int, due) for aggregate_id, due in self.timers.items()]
        return _chunk_result, (events, timers, self.stats)


def _int(value: UUID | None) -> int | None:
    return None if value is None else value.int


def _chunk_result(
    events: list[tuple[Any, ...]], timers: list[tuple[int, datetime | None]], stats: dict[str, int]
) -> ChunkResult:
    rows = [
        NewStreamRow(
            ids.uuid_of_int(e[0]),
            e[1],
            e[2],
            e[3],
            e[4],
            e[5],
            None if e[6] is None else ids.uuid_of_int(e[6]),
            e[7],
            e[8],
            None if e[9] is None else ids.uuid_of_int(e[9]),
            None if e[10] is None else ids.uuid_of_int(e[10]),
            e[11],
            e[12],
        )
        for e in events
    ]
    return ChunkResult(rows, {ids.uuid_of_int(i): due for i, due in timers}, stats)


@dataclass(frozen=True)
class ChunkFailed:
    reason: str


# ---------------------------------------------------------------------- the writing process


@contextmanager
def worker_pool(setup: WorkerSetup, workers: int) -> Iterator[Any]:
    """Worker processes, each with a ledger of its own on the same store (spawned: the writer
    holds threads and connections a fork would copy)."""
    context = multiprocessing.get_context("spawn")
    pool = context.Pool(workers, initializer=_start_worker, initargs=(setup,))
    try:
        yield pool
        pool.close()
    finally:
        pool.terminate()
        pool.join()


def relocate(events: Sequence[NewStreamRow], *, head: int, numbered: int, prefix: str) -> list[NewStreamRow]:
    """A chunk's events as they are once the log's head is `head` and `numbered` invoice numbers
    were assigned before it."""
    relocated = []
    for row in events:
        state, version = row.state, row.originator_version
        if row.originator_id == ids.INVOICE_NUMBERING_ID:
            version += numbered
        if RELOCATABLE_PREFIX.encode() in state:
            state = _NUMBER.sub(lambda m: invoice_number(prefix, numbered + int(m[1])).encode(), state)
        if _HEAD_DIGITS in state:
            state = _POSITION.sub(lambda m: _position(m, head), state)
            if _HEAD_DIGITS in state:
                raise RelocationFailed(f"a stand-in position left in {row.event_type}")
        if state is not row.state or version != row.originator_version:
            row = row._replace(state=state, originator_version=version)
        relocated.append(row)
    return relocated


def _position(match: re.Match[bytes], head: int) -> bytes:
    value = int(match[2])
    if value >= RELOCATABLE_HEAD:
        value = value - RELOCATABLE_HEAD + head
    return b'"' + match[1] + b'":' + str(value).encode()


# ---------------------------------------------------------------------- a worker process

_worker: Any = None  # the worker's Simulation


def _start_worker(setup: WorkerSetup) -> None:
    from application.simulation import Simulation

    global _worker
    ledger = Ledger(
        env={**setup.env, "CREATE_TABLE": "n", "POSTGRES_POOL_SIZE": "1", "POSTGRES_MAX_OVERFLOW": "1"},
        invoice_prefix=RELOCATABLE_PREFIX,
        invoice_grace=setup.invoice_grace,
    )
    _worker = Simulation(
        ledger, customers=setup.customers, months=setup.months, seed=setup.seed, until=setup.until
    )
    # What the worker keeps is built: out of the collector's sight, which runs less often (a
    # chunk's commands make millions of short-lived objects; see infra/heap.py).
    heap.settle()


def simulate_chunk(chunk: Chunk) -> ChunkResult | ChunkFailed:
    """Run in a worker: the chunk's customers, into a detached batch. Whatever goes wrong, the
    writer simulates the chunk itself (and meets the same error there, if it is one)."""
    try:
        return _worker.detached_chunk(chunk)  # type: ignore[no-any-return]
    except NeedsTheStore as needed:
        return ChunkFailed(f"needs the store: {needed}")
    except Exception as failed:  # noqa: BLE001 - reported as the chunk's result, never lost
        return ChunkFailed(repr(failed))


def detached() -> Detached:
    """The stand-ins a worker's batch pretends (see the module docstring)."""
    return Detached(head=RELOCATABLE_HEAD, versions={ids.INVOICE_NUMBERING_ID: 0})
