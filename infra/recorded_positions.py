"""Knowledge time to log position: the last position recorded at or before a moment, fast.

`recorded_at` is the database's clock_timestamp() taken while an append holds the event table's
EXCLUSIVE lock, and positions come from a sequence in the same insert: so recorded_at never
decreases along positions, and the events recorded at or before T are exactly those at or
before P, the last position recorded by T. A scan for P (`ORDER BY position DESC` until a row
recorded by T) reads every event recorded after T: seconds on millions of events.

So the log is walked once, checking that recorded_at never goes back, and every
SAMPLE_EVERY-th (recorded_at, position) is kept; later walks read only what was appended since.
The walk is kept in the unlogged table `known_at_walk` (a cache: after a crash the log is
walked again), so a new process goes on from there. Finding P then reads at most SAMPLE_EVERY
index entries. If recorded_at ever went back (a clock stepped back), `position_at` answers None
and the caller falls back to the scan or to a full replay."""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg import Connection, sql

SAMPLE_EVERY = 1024
EVENTS_TABLE = "ledger_events"

WALK_DDL = (
    "CREATE UNLOGGED TABLE IF NOT EXISTS {s}.known_at_walk (position bigint PRIMARY KEY,"
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


def _q(text: str, schema: str) -> sql.Composed:
    """`text` with {s} as the schema's quoted name."""
    return sql.SQL(text).format(s=sql.Identifier(schema))  # type: ignore[arg-type]


def _walk_of(conn: Connection[Any], schema: str) -> _Walk:
    key = (conn.info.dsn, schema)
    with _WALKS_LOCK:
        walk = _WALKS.get(key)
        if walk is None:
            walk = _WALKS[key] = _Walk()
    return walk


def _load(conn: Connection[Any], schema: str, walk: _Walk) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(7429017)")
        conn.execute(_q(WALK_DDL, schema))
    rows = conn.execute(
        _q(
            "SELECT position AS notification_id, recorded_at, back FROM {s}.known_at_walk ORDER BY position",
            schema,
        )
    ).fetchall()
    for r in rows:
        walk.add(*_values(r))
    walk.loaded = True


def _still_there(conn: Connection[Any], schema: str, walk: _Walk) -> bool:
    """Whether the last event walked is still the one at that position (a schema dropped and
    made again holds another log)."""
    row = conn.execute(
        _q("SELECT recorded_at AS p FROM {s}.ledger_events WHERE notification_id = %s", schema), (walk.upto,)
    ).fetchone()
    return row is not None and _first(row) == walk.times[-1]


def _advance(conn: Connection[Any], schema: str, walk: _Walk) -> None:
    """Check the events appended since the last walk (recorded_at never decreasing, the last
    event checked included so that the check joins up), sample them and keep the samples."""
    if walk.loaded and walk.positions and not _still_there(conn, schema, walk):
        walk.reset()  # another log under the same name: walk it afresh
    if not walk.loaded:
        _load(conn, schema, walk)
    rows = conn.execute(
        _q(
            "SELECT notification_id, recorded_at, back FROM ("
            " SELECT notification_id, recorded_at,"
            " coalesce(recorded_at < lag(recorded_at) OVER (ORDER BY notification_id), false) AS back,"
            " row_number() OVER (ORDER BY notification_id) AS n,"
            " max(notification_id) OVER () AS head"
            " FROM {s}.ledger_events WHERE notification_id >= %(from)s) w"
            " WHERE back OR n %% %(every)s = 0 OR notification_id = head ORDER BY notification_id",
            schema,
        ),
        {"from": walk.upto, "every": SAMPLE_EVERY},
    ).fetchall()
    fresh = [v for v in map(_values, rows) if v[0] > walk.upto or v[2]]
    for position, recorded_at, back in fresh:
        walk.add(position, recorded_at, back)
    if fresh:
        with conn.cursor() as cur:
            cur.executemany(
                _q(
                    "INSERT INTO {s}.known_at_walk AS w (position, recorded_at, back) VALUES (%s, %s, %s)"
                    " ON CONFLICT (position) DO UPDATE SET back = w.back OR excluded.back",
                    schema,
                ),
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
        _advance(conn, schema, walk)
        if not walk.monotone:
            return None
        at = bisect.bisect_right(walk.times, known_at)
        low = walk.positions[at - 1] if at > 0 else 0
        if at >= len(walk.positions):
            return walk.upto if walk.positions else 0
        high = walk.positions[at]
    row = conn.execute(
        _q(
            "SELECT max(notification_id) AS p FROM {s}.ledger_events"
            " WHERE notification_id > %s AND notification_id <= %s AND recorded_at <= %s",
            schema,
        ),
        (low, high, known_at),
    ).fetchone()
    found = _first(row)
    return int(found) if found is not None else low


def _first(row: Any) -> Any:
    if row is None:
        return None
    return row["p"] if isinstance(row, dict) else row[0]
