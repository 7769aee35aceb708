"""The projectors by name: how each applies an event and which tables it owns."""

from __future__ import annotations

from projections.core import apply_event
from projections.runner import Apply
from projections.schema import CORE_TABLES

PROJECTORS: dict[str, tuple[Apply, tuple[str, ...]]] = {
    "core": (apply_event, CORE_TABLES),
}


def projector(name: str) -> Apply:
    try:
        return PROJECTORS[name][0]
    except KeyError:
        raise SystemExit(f"no projector named '{name}' (known: {', '.join(PROJECTORS)})") from None


def tables_of(name: str) -> tuple[str, ...]:
    return PROJECTORS[name][1]
