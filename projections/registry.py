"""The projectors by name: how each applies an event and which tables it owns."""

from __future__ import annotations

from projections.core import apply_event
from projections.journal import JOURNAL_TABLES, apply_journal
from projections.mrr import apply_mrr_fact, settle_mrr
from projections.projection import Projection
from projections.receivables import apply_receivable_fact, settle_receivables
from projections.runner import Apply
from projections.schema import CORE_TABLES, METRICS_TABLES
from projections.usage import apply_usage_fact, settle_usage

# The core projector: the resources as rows, then the metrics derived from them (receivables
# read the invoices' currency from rm_invoices, so they settle after the rows are written), and
# the double-entry journal.
CORE = Projection(
    apply_event,
    apply_mrr_fact,
    apply_receivable_fact,
    apply_usage_fact,
    apply_journal,
    settlers=(settle_mrr, settle_receivables, settle_usage),
)

PROJECTORS: dict[str, tuple[Apply, tuple[str, ...]]] = {
    "core": (CORE, CORE_TABLES + METRICS_TABLES + JOURNAL_TABLES),
}


def projector(name: str) -> Apply:
    try:
        return PROJECTORS[name][0]
    except KeyError:
        raise SystemExit(f"no projector named '{name}' (known: {', '.join(PROJECTORS)})") from None


def tables_of(name: str) -> tuple[str, ...]:
    return PROJECTORS[name][1]
