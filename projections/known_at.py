"""`known_at=T` read from versioned read models: no replay per moment.

Why versions rather than snapshots. A snapshot at T is a replay of every event recorded by T
(minutes on millions of events); checkpoints plus a replayed tail would need a copy of the read
models per moment (seconds) or a tail bounded so tightly that the checkpoints cost more than the
read models. The metrics that `known_at` answers (MRR and its movements, churn, receivables) are
derived per key (customer, invoice) from facts that carry their event's position, so their
settle steps keep a version of each derived row per position at which it changed
(projections/versions.py). A moment T is then a position P, and the answer reads the rows
current at P, through indexes, like the live answer.

The moment → position step (infra/recorded_positions.py). recorded_at never decreases along
positions by construction (taken under the append's table lock), so the events recorded by T
are those up to P, the last position recorded by T. This is checked, not assumed: if
recorded_at ever went back (a clock stepped back), or if the versions are not complete (read
models written before versions were kept, until a `ledger replay`), `known_at` answers from a
full replay snapshot (projections/snapshots.py), as before.

What is read. The queries of projections/metric_queries.py run unchanged, with a search path
holding only the views below (the position in the session setting `ledger.known_position`):
rm_mrr_movements and rm_receivable_spans (the versions current at P), rm_mrr_daily (the sums of
those movements, `paying` included: the live table is their running sum, checked by
`days_whose_totals_differ`), rm_customers and rm_plans (those created by P, their name and
currency read from their own events at P). A query that needed another table would fail rather
than read today's rows. The quotas list reads tables that keep no versions: it still answers
from a full replay."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from psycopg import Connection, sql

from infra import recorded_positions

SETTING = "ledger.known_position"
VIEWS = ("rm_mrr_movements", "rm_mrr_daily", "rm_receivable_spans", "rm_customers", "rm_plans")


def views_schema(schema: str) -> str:
    return f"{schema}_as_known"


_P = f"current_setting('{SETTING}')::bigint"
_VISIBLE = f"known_from <= {_P}"
# Written as a range so that the retired spans' index on both times serves it.
_VISIBLE_RETIRED = f"int8range(known_from, known_to, '[)') @> {_P}"
_MOVEMENT_COLUMNS = "customer_id, currency, day, kind, amount, mrr_before, mrr_after"
_SPAN_COLUMNS = "invoice_id, customer_id, currency, due_date, amount_remaining, valid_from, valid_to"


def _latest(field_name: str, stream: str, types: tuple[str, ...]) -> str:
    """The value of a payload field in the stream's last event of `types` recorded by P that names it."""
    kinds = ", ".join(f"'{t}'" for t in types)
    value = f"convert_from(e.state, 'UTF8')::jsonb ->> '{field_name}'"
    return (
        f"(SELECT {value} FROM {{s}}.ledger_events e WHERE e.originator_id = {stream}"
        f" AND e.notification_id <= {_P} AND e.event_type IN ({kinds}) AND {value} IS NOT NULL"
        " ORDER BY e.originator_version DESC LIMIT 1)"
    )


_VIEW_SQL = {
    "rm_mrr_movements": (
        f"SELECT {_MOVEMENT_COLUMNS} FROM {{s}}.rm_mrr_movements WHERE {_VISIBLE}"
        f" UNION ALL SELECT {_MOVEMENT_COLUMNS} FROM {{s}}.rm_mrr_movements_retired WHERE {_VISIBLE_RETIRED}"
    ),
    "rm_mrr_daily": (
        "SELECT currency, day, "
        + ", ".join(
            f"coalesce(sum(amount) FILTER (WHERE kind = '{k}'), 0)::bigint AS {k}"
            for k in ("new", "expansion", "contraction", "churn", "reactivation")
        )
        + ", coalesce(sum((mrr_after > 0)::int - (mrr_before > 0)::int), 0)::bigint AS paying"
        + " FROM {v}.rm_mrr_movements GROUP BY currency, day"
    ),
    "rm_receivable_spans": (
        f"SELECT {_SPAN_COLUMNS} FROM {{s}}.rm_receivable_spans WHERE {_VISIBLE}"
        f" UNION ALL SELECT {_SPAN_COLUMNS} FROM {{s}}.rm_receivable_spans_retired WHERE {_VISIBLE_RETIRED}"
    ),
    "rm_customers": (
        "SELECT c.id, c.seq, c.currency, "
        + _latest("name", "c.id", ("Customer.Registered", "Customer.Updated"))
        + f" AS name FROM {{s}}.rm_customers c WHERE c.seq <= {_P}"
    ),
    "rm_plans": (
        "SELECT p.id, p.seq, p.code, "
        + _latest("currency", "p.id", ("Plan.Defined", "Plan.Revised"))
        + f" AS currency FROM {{s}}.rm_plans p WHERE p.seq <= {_P}"
    ),
}

# Any of these rows means some versions are missing (written before versions were kept).
_UNVERSIONED = " OR ".join(
    f"EXISTS (SELECT 1 FROM {table} WHERE known_from IS NULL)"
    for table in (
        "rm_mrr_movements",
        "rm_mrr_movements_retired",
        "rm_receivable_spans",
        "rm_receivable_spans_retired",
    )
)


def position_at(conn: Connection[Any], schema: str, known_at: datetime) -> int | None:
    """The last position recorded at or before `known_at`, None when positions do not order
    knowledge time (see infra/recorded_positions.py)."""
    return recorded_positions.position_at(conn, schema, known_at)


def _first(row: Any) -> Any:
    if row is None:
        return None
    return row["p"] if isinstance(row, dict) else row[0]


def versions_complete(conn: Connection[Any]) -> bool:
    """Whether every derived row the views read carries its versions."""
    row = conn.execute(f"SELECT ({_UNVERSIONED}) AS p").fetchone()
    return not _first(row)


_ENSURED: set[str] = set()


def ensure_views(conn: Connection[Any], schema: str) -> None:
    """Create the views once per process (their definition may have changed with the code) and
    again whenever some are missing (a replay's swap drops them with the tables they read)."""
    target = views_schema(schema)
    if schema in _ENSURED:
        row = conn.execute(
            "SELECT count(*) AS p FROM pg_views WHERE schemaname = %s AND viewname = ANY(%s)",
            (target, list(VIEWS)),
        ).fetchone()
        if int(_first(row)) == len(VIEWS):
            return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(7429016)")
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(target)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(target)))
        for view in VIEWS:
            body = _VIEW_SQL[view].replace("{s}", _quoted(schema)).replace("{v}", _quoted(target))
            conn.execute(
                sql.SQL("CREATE VIEW {}.{} AS ").format(sql.Identifier(target), sql.Identifier(view))
                + sql.SQL(body)  # type: ignore[arg-type]
            )
    _ENSURED.add(schema)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@contextlib.contextmanager
def reading_known(conn: Connection[Any], schema: str, position: int) -> Iterator[Connection[Any]]:
    """Point a pooled connection's queries at the read models as known at `position`, and back
    at the live schema after."""
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(views_schema(schema))))
    conn.execute("SELECT set_config(%s, %s, false)", (SETTING, str(position)))
    try:
        yield conn
    finally:
        conn.execute("RESET search_path")
        conn.execute(sql.SQL("RESET " + SETTING))  # type: ignore[arg-type]
