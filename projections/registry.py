"""The projectors by name: how each applies an event and which tables it owns."""

from __future__ import annotations

from projections.core import Executor, StoredEventRow, apply_event
from projections.journal import JOURNAL_TABLES, apply_journal
from projections.runner import Apply
from projections.schema import CORE_TABLES


def chain(*applies: Apply) -> Apply:
    """One projector made of several: each event goes to each, in order, in the same batch."""

    def apply_all(cur: Executor, event: StoredEventRow) -> None:
        for apply in applies:
            apply(cur, event)

    return apply_all


PROJECTORS: dict[str, tuple[Apply, tuple[str, ...]]] = {
    "core": (chain(apply_event, apply_journal), CORE_TABLES + JOURNAL_TABLES),
}


def projector(name: str) -> Apply:
    try:
        return PROJECTORS[name][0]
    except KeyError:
        raise SystemExit(f"no projector named '{name}' (known: {', '.join(PROJECTORS)})") from None


def tables_of(name: str) -> tuple[str, ...]:
    return PROJECTORS[name][1]
