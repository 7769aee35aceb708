"""A projector as the runtime sees it: per-event handlers that only write (sent pipelined, never
waiting for an answer), then `settle` steps that may read what the batch wrote and derive rows
from it (MRR movements, receivable spans, usage quotas), in the same transaction.

Settle steps recompute whole keys (a customer, an invoice) from stored facts, so their result
depends only on the facts, never on how the log was cut into batches: live projection and
replay give the same rows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from psycopg import Connection

from projections.core import Executor, StoredEventRow

Apply = Callable[[Executor, StoredEventRow], None]
Settle = Callable[[Connection[Any], Sequence[StoredEventRow]], None]


class Projection:
    def __init__(self, *appliers: Apply, settlers: Sequence[Settle] = ()) -> None:
        self.appliers = appliers
        self.settlers = tuple(settlers)

    def __call__(self, cur: Executor, event: StoredEventRow) -> None:
        for apply in self.appliers:
            apply(cur, event)

    def settle(self, conn: Connection[Any], events: Sequence[StoredEventRow]) -> None:
        for step in self.settlers:
            step(conn, events)


def settle_batch(conn: Connection[Any], apply: Apply, events: Sequence[StoredEventRow]) -> None:
    """Run the settle steps of `apply` if it has any (a plain handler function has none)."""
    settle = getattr(apply, "settle", None)
    if settle is not None and events:
        settle(conn, events)
