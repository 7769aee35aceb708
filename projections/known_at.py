"""`known_at=T` read from versioned read models: no replay per moment.

Why versions rather than snapshots. A snapshot at T is a replay of every event recorded by T
(minutes on millions of events); checkpoints plus a replayed tail would need a copy of the read
models per moment (seconds) or a tail bounded so tightly that the checkpoints cost more than the
read models. The metrics that `known_at` answers (MRR and its movements, churn, receivables) are
derived per key (customer, invoice) from facts that carry their event's position, so their
settle steps keep a version of each derived row per position at which it changed
(projections/versions.py). A moment T is then a position P, and the answer reads the rows
current at P, through indexes, like the live answer.

The moment → position step. `recorded_at` is the database's clock_timestamp() taken while the
append holds the event table's EXCLUSIVE lock (infra/eventstore.py), and positions come from a
sequence in the same insert: so recorded_at never decreases along positions, and the events
recorded at or before T are exactly those at or before P, the last position recorded by T.
This is checked, not assumed: the log is walked once (then only what was appended since; the
walk is kept in `known_at_walk`, so a new process goes on from there) checking that recorded_at
never goes back; if it ever does (a clock stepped back), or if the versions are not complete
(read models written before versions were kept, until a `ledger replay`), `known_at` answers
from a full replay snapshot (projections/snapshots.py), as before. The walk also keeps every
1,024th (recorded_at, position), so finding P reads at most 1,024 index entries.

What is read. The queries of projections/metric_queries.py run unchanged, with a search path
holding only the views below (the position in the session setting `ledger.known_position`):
rm_mrr_movements and rm_receivable_spans (the versions current at P), rm_mrr_daily (the sums of
those movements, `paying` included: the live table is their running sum, checked by
`days_whose_totals_differ`), rm_customers and rm_plans (those created by P, their name and
currency read from their own events at P). A query that needed another table would fail rather
than read today's rows. The quotas list reads tables that keep no versions: it still answers
from a full replay."""

from __future__ import annotations

import bisect
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg import Connection, sql

SETTING = "ledger.known_position"
SAMPLE_EVERY = 1024
VIEWS = ("rm_mrr_movements", "rm_mrr_daily", "rm_receivable_spans", "rm_customers", "rm_plans")


def views_schema(schema: str) -> str:
    return f"{schema}_as_known"


_P = f"current_setting('{SETTING}')::bigint"
_VISIBLE = f"known_from <= {_P}"
_VISIBLE_RETIRED = f"known_from <= {_P} AND known_to > {_P}"
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


# The walk, kept: a process starting on a long log reads it here instead of walking it again.
# A cache (unlogged: after a crash it is empty, and the log is walked again).
WALK_DDL = (
    "CREATE UNLOGGED TABLE IF NOT EXISTS known_at_walk (position bigint PRIMARY KEY,"
    " recorded_at timestamptz NOT NULL, back boolean NOT NULL)"
)


@dataclass
class _Walk:
    """How far the log has been checked: positions up to `upto`, whether recorded_at ever went
    back, and every SAMPLE_EVERY-th (recorded_at, position)."""

    upto: int = 0
    monotone: bool = True
    loaded: bool = False
    times: list[datetime] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        self.upto, self.monotone, self.loaded = 0, True, False
        self.times, self.positions = [], []

    def add(self, position: int, recorded_at: datetime, back: bool) -> None:
        if back:
            self.monotone = False
        if position > self.upto:
            self.times.append(recorded_at)
            self.positions.append(position)
            self.upto = position


_WALKS: dict[tuple[str, str], _Walk] = {}
_WALKS_LOCK = threading.Lock()


def _walk_of(conn: Connection[Any], schema: str) -> _Walk:
    key = (conn.info.dsn, schema)
    with _WALKS_LOCK:
        walk = _WALKS.get(key)
        if walk is None:
            walk = _WALKS[key] = _Walk()
    return walk


def _load(conn: Connection[Any], walk: _Walk) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(7429017)")
        conn.execute(WALK_DDL)
    for r in conn.execute(
        "SELECT position, recorded_at, back FROM known_at_walk ORDER BY position"
    ).fetchall():
        walk.add(*_values(r))
    walk.loaded = True


def _still_there(conn: Connection[Any], walk: _Walk) -> bool:
    """Whether the last event walked is still the one at that position (a schema dropped and
    made again holds another log)."""
    row = conn.execute(
        "SELECT recorded_at AS p FROM ledger_events WHERE notification_id = %s", (walk.upto,)
    ).fetchone()
    return row is not None and _first(row) == walk.times[-1]


def _advance(conn: Connection[Any], walk: _Walk) -> None:
    """Check the events appended since the last walk (recorded_at never decreasing, the last
    event checked included so that the check joins up), sample them and keep the samples."""
    if walk.loaded and walk.positions and not _still_there(conn, walk):
        walk.reset()  # another log under the same name: walk it afresh
    if not walk.loaded:
        _load(conn, walk)
    rows = conn.execute(
        "SELECT notification_id, recorded_at, back FROM ("
        " SELECT notification_id, recorded_at,"
        " coalesce(recorded_at < lag(recorded_at) OVER (ORDER BY notification_id), false) AS back,"
        " row_number() OVER (ORDER BY notification_id) AS n,"
        " max(notification_id) OVER () AS head"
        " FROM ledger_events WHERE notification_id >= %(from)s) w"
        " WHERE back OR n %% %(every)s = 0 OR notification_id = head ORDER BY notification_id",
        {"from": walk.upto, "every": SAMPLE_EVERY},
    ).fetchall()
    fresh = [v for v in map(_values, rows) if v[0] > walk.upto or v[2]]
    for position, recorded_at, back in fresh:
        walk.add(position, recorded_at, back)
    if fresh:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO known_at_walk (position, recorded_at, back) VALUES (%s, %s, %s)"
                " ON CONFLICT (position) DO UPDATE SET back = known_at_walk.back OR excluded.back",
                fresh,
            )


def _values(r: Any) -> tuple[int, datetime, bool]:
    if isinstance(r, dict):
        return int(r["notification_id"]), r["recorded_at"], bool(r["back"])
    return int(r[0]), r[1], bool(r[2])


def position_at(conn: Connection[Any], schema: str, known_at: datetime) -> int | None:
    """The last position recorded at or before `known_at` (0: none), or None when the log's
    recorded_at went back somewhere (then positions do not order knowledge time)."""
    walk = _walk_of(conn, schema)
    with walk.lock:
        _advance(conn, walk)
        if not walk.monotone:
            return None
        at = bisect.bisect_right(walk.times, known_at)
        low = walk.positions[at - 1] if at > 0 else 0
        if at >= len(walk.positions):
            return walk.upto if walk.positions else 0
        high = walk.positions[at]
    row = conn.execute(
        "SELECT max(notification_id) AS p FROM ledger_events"
        " WHERE notification_id > %s AND notification_id <= %s AND recorded_at <= %s",
        (low, high, known_at),
    ).fetchone()
    found = _first(row)
    return int(found) if found is not None else low


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
