"""Versions of derived rows by knowledge time: what `known_at` reads without replaying the log.

A derived read model (MRR movements, receivable spans) is a pure function of the facts of one
key (a customer, an invoice), and each fact carries the log position of its event. So the rows
of a key as the ledger knew them once the log reached position P are the function of the key's
facts with position <= P. Settle steps compute that function once per position at which a fact
of the key arrived in the batch (nearly always one; a key with several facts in a batch gets its
in-between states too), and keep every version:

- the live table holds the current rows, each stamped `known_from` (the position of the fact
  from which on it is current);
- a `_retired` table holds the rows that stopped being current, with `known_from` and
  `known_to` (the position of the fact that replaced or removed it).

A row is visible at P when known_from <= P < known_to (live rows: known_to is infinite). The
versions are a function of the facts alone, never of how the log was cut into batches, so a
live projector and a replay write the same ones (the replay-equals-live tests compare them)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass
class VersionChanges(Generic[K, V]):
    """What to write: live rows to delete (by key), rows to add to the retired table (key,
    value, known_from, known_to) and rows to insert live (key, value, known_from)."""

    live_deleted: list[K] = field(default_factory=list)
    retired: list[tuple[K, V, int | None, int]] = field(default_factory=list)
    live_added: list[tuple[K, V, int]] = field(default_factory=list)

    def extend(self, other: VersionChanges[K, V]) -> None:
        self.live_deleted += other.live_deleted
        self.retired += other.retired
        self.live_added += other.live_added


def version_chain(
    current: Mapping[K, tuple[V, int | None]], steps: Sequence[tuple[int, Mapping[K, V]]]
) -> VersionChanges[K, V]:
    """From the live rows of some keys (value and known_from) and their states after each of
    `steps` (position, rows), in position order, the writes that keep every version. A row
    equal in consecutive states stays as it is (its known_from does not move)."""
    changes: VersionChanges[K, V] = VersionChanges()
    rows: dict[K, tuple[V, int | None, bool]] = {key: (v, born, True) for key, (v, born) in current.items()}
    for position, state in steps:
        for key, (value, born, live) in list(rows.items()):
            if key not in state or state[key] != value:
                changes.retired.append((key, value, born, position))
                if live:
                    changes.live_deleted.append(key)
                del rows[key]
        for key, value in state.items():
            if key not in rows:
                rows[key] = (value, position, False)
    changes.live_added = [
        (key, value, born) for key, (value, born, live) in rows.items() if not live and born is not None
    ]
    return changes
