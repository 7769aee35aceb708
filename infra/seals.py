"""Seals: checkpoints of the hash chain (`infra/hash_chain.py`), stored as the log grows, and the
verification that recomputes the chain from the stored events and compares it with them.

A seal covers the events after the previous seal up to its `position`: it keeps the chain hash
after its last event, how many events it covers, their positions and the first bytes of each
one's chain hash. The hash proves the whole prefix; positions and marks only serve to name the
first event that differs once a seal no longer matches: an event whose hash differs was altered,
a position the seal lists but the log lacks was removed, a position the log has but the seal
does not list was inserted. Seals are append-only (the database refuses UPDATE and DELETE).

What seals cannot prove: anything about events after the last seal (verification seals them
first, so it vouches for the log as it is when it runs), or a rewrite of the log *and* every
seal by someone who controls the database. Against that, keep the `sealed_hash` a verification
reports somewhere else (a ticket, an email): a later verification whose chain passes through
that position with another hash proves the rewrite."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import Connection
from psycopg_pool import ConnectionPool

from infra.background import BackgroundLoop
from infra.hash_chain import (
    EVENTS_TABLE,
    GENESIS,
    RECORD,
    chain,
    chain_with_marks,
    event_count,
    iter_marks,
    position_at,
    prepare_session,
    records_after,
    records_in_range,
    split_positions,
)

log = logging.getLogger(__name__)

SEALS_DDL = """
CREATE TABLE IF NOT EXISTS audit_seals (
    position bigint PRIMARY KEY,
    events int NOT NULL CHECK (events > 0),
    hash bytea NOT NULL,
    positions bytea NOT NULL,
    marks bytea NOT NULL,
    sealed_at timestamptz NOT NULL DEFAULT now()
);
CREATE OR REPLACE FUNCTION audit_seals_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'seals are append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE OR REPLACE TRIGGER audit_seals_immutable BEFORE UPDATE OR DELETE ON audit_seals
    FOR EACH ROW EXECUTE FUNCTION audit_seals_refuse_change();
CREATE OR REPLACE TRIGGER audit_seals_no_truncate BEFORE TRUNCATE ON audit_seals
    FOR EACH STATEMENT EXECUTE FUNCTION audit_seals_refuse_change();
"""

SEGMENT_EVENTS = 10_000  # events per seal at most
CHUNK_EVENTS = 10_000  # events verification reads per query (whole seals): small, so readers overlap
SEAL_LOCK = 7429101  # advisory lock: one sealer at a time


def create_seal_table(conn: Connection[Any]) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(7429001)")  # the schema-creation lock
        conn.execute(SEALS_DDL)


# ------------------------------------------------------------------------------ sealing


def safe_horizon(pool: ConnectionPool, *, patience_seconds: float = 2.0) -> int | None:
    """The highest position below which no event can still appear, or None if it cannot be
    known right now.

    Positions are drawn from a sequence when a row is inserted, not when it commits, so in
    general a lower position can become visible after a higher one. The event store prevents
    that (appends hold an EXCLUSIVE lock on the table until they commit), but sealing must not
    depend on every writer keeping that rule: a position sealed too early would later look like
    an insertion. So the head is read while holding the table in SHARE mode, which conflicts
    with the ROW EXCLUSIVE lock every INSERT holds until its transaction ends: once granted,
    no insert is in flight and every position up to the head is final. The lock is requested
    NOWAIT (writers never queue behind the sealer) and held only for the index lookup of the
    head; while writers are busy it is retried with a growing pause, up to `patience_seconds`."""
    deadline = time.monotonic() + patience_seconds
    pause = 0.005
    with pool.connection() as conn:
        while True:
            try:
                with conn.transaction():
                    conn.execute(f"LOCK TABLE {EVENTS_TABLE} IN SHARE MODE NOWAIT")
                    row: Any = conn.execute(
                        f"SELECT coalesce(max(notification_id), 0) AS head FROM {EVENTS_TABLE}"
                    ).fetchone()
                    return int(row["head"])
            except psycopg.errors.LockNotAvailable:
                if time.monotonic() + pause > deadline:
                    return None
                time.sleep(pause)
                pause = min(pause * 2, 0.2)


@dataclass(frozen=True)
class SealRound:
    events: int  # newly sealed
    position: int  # the last sealed position after the round
    more: bool  # stopped at max_segments with more to seal


def seal(
    pool: ConnectionPool,
    *,
    max_segments: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    patience_seconds: float = 2.0,
) -> SealRound:
    """Seal the events up to the safe horizon, SEGMENT_EVENTS at a time (each segment in its own
    transaction, under an advisory lock, so concurrent sealers take turns and never fork the
    chain). `progress(sealed, left_upper_bound)` is called after each segment."""
    horizon = safe_horizon(pool, patience_seconds=patience_seconds)
    sealed = 0
    segments = 0
    while True:
        with pool.connection() as conn, conn.transaction():
            prepare_session(conn)
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SEAL_LOCK,))
            last_position, last_hash = _last_seal(conn)
            if horizon is None or last_position >= horizon:
                return SealRound(sealed, last_position, more=False)
            if max_segments is not None and segments >= max_segments:
                return SealRound(sealed, last_position, more=True)
            records = records_after(conn, last_position, horizon, SEGMENT_EVENTS)
            if not records:
                return SealRound(sealed, last_position, more=False)
            chained = chain_with_marks(last_hash, records)
            end = position_at(records, chained.count - 1)
            conn.execute(
                "INSERT INTO audit_seals (position, events, hash, positions, marks)"
                " VALUES (%s, %s, %s, %s, %s)",
                (end, chained.count, chained.hash, chained.positions, chained.marks),
            )
        sealed += chained.count
        segments += 1
        if progress:
            progress(chained.count, max(0, horizon - end))


def _last_seal(conn: Connection[Any]) -> tuple[int, bytes]:
    row: Any = conn.execute(
        "SELECT position, hash FROM audit_seals ORDER BY position DESC LIMIT 1"
    ).fetchone()
    return (0, GENESIS) if row is None else (int(row["position"]), bytes(row["hash"]))


def unsealed_upper_bound(pool: ConnectionPool) -> int:
    """How many positions lie after the last seal (gaps included: a cheap upper bound)."""
    with pool.connection() as conn:
        row: Any = conn.execute(
            f"SELECT coalesce((SELECT max(notification_id) FROM {EVENTS_TABLE}), 0)"
            " - coalesce((SELECT max(position) FROM audit_seals), 0) AS n"
        ).fetchone()
        return max(0, int(row["n"]))


class BackgroundSealer(BackgroundLoop):
    """Seals new history every `every_seconds` (a backlog is sealed without pausing, a few
    segments per step so that stopping stays prompt)."""

    def __init__(self, pool: ConnectionPool, every_seconds: float = 5.0) -> None:
        self.pool = pool
        super().__init__("sealer", self._step, poll_seconds=every_seconds, max_idle_seconds=every_seconds)

    def _step(self) -> int:
        round_ = seal(self.pool, max_segments=10, patience_seconds=1.0)
        return round_.events if round_.more else 0


# ------------------------------------------------------------------------------ verifying


@dataclass(frozen=True)
class Seal:
    position: int
    events: int
    hash: bytes


@dataclass(frozen=True)
class Verification:
    ok: bool
    events_checked: int
    sealed_position: int
    sealed_hash: str | None
    first_bad_position: int | None = None
    problem: str | None = None  # altered, removed, inserted or seal_damaged
    detail: str | None = None


def _seals(conn: Connection[Any]) -> list[Seal]:
    rows: list[Any] = conn.execute(
        "SELECT position, events, hash FROM audit_seals ORDER BY position"
    ).fetchall()
    return [Seal(int(r["position"]), int(r["events"]), bytes(r["hash"])) for r in rows]


def _chunks(seals: list[Seal]) -> Iterator[list[Seal]]:
    """Consecutive seals grouped into reads of about CHUNK_EVENTS events."""
    chunk: list[Seal] = []
    size = 0
    for s in seals:
        chunk.append(s)
        size += s.events
        if size >= CHUNK_EVENTS:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def verify(
    pool: ConnectionPool,
    *,
    progress: Callable[[int, int], None] | None = None,
    readers: int = 2,
) -> Verification:
    """Recompute the chain over every sealed event and compare it with each seal, in order; stop
    at the first seal that does not match and name the first event that differs in it.

    `readers` connections fetch the next ranges while this thread chains the current one (the
    server computes the per-event digests, so two readers use two server processes).
    `progress(events, total)` is called after each range."""
    with pool.connection() as conn:
        seals = _seals(conn)
    if not seals:
        return Verification(True, 0, 0, None)
    total = sum(s.events for s in seals)
    checked = 0
    previous_end, h = 0, GENESIS
    with ThreadPoolExecutor(max_workers=readers, thread_name_prefix="verify-reader") as executor:
        for chunk, records in _prefetched(pool, executor, seals, readers + 1):
            view = memoryview(records)
            offset = 0
            for s in chunk:
                piece = view[offset : offset + s.events * RECORD]
                after = chain(h, piece)
                complete = event_count(piece) == s.events and position_at(piece, s.events - 1) == s.position
                if not (complete and after == s.hash):
                    with pool.connection() as conn:
                        return _locate(conn, s, previous_end, h, checked, seals[-1])
                offset += s.events * RECORD
                previous_end, h = s.position, after
                checked += s.events
            if progress:
                progress(sum(s.events for s in chunk), total)
    last = seals[-1]
    return Verification(True, checked, last.position, last.hash.hex())


def _prefetched(
    pool: ConnectionPool, executor: ThreadPoolExecutor, seals: list[Seal], ahead: int
) -> Iterator[tuple[list[Seal], bytes]]:
    """Each chunk of seals with the records of its range, read `ahead` chunks in advance."""

    def read(after: int, up_to: int) -> bytes:
        with pool.connection() as conn:
            prepare_session(conn)
            return records_in_range(conn, after, up_to)

    pending: deque[tuple[list[Seal], Future[bytes]]] = deque()
    previous_end = 0
    for chunk in _chunks(seals):
        pending.append((chunk, executor.submit(read, previous_end, chunk[-1].position)))
        previous_end = chunk[-1].position
        if len(pending) > ahead:
            first, future = pending.popleft()
            yield first, future.result()
    while pending:
        first, future = pending.popleft()
        yield first, future.result()


def _locate(
    conn: Connection[Any], s: Seal, previous_end: int, previous_hash: bytes, checked: int, last: Seal
) -> Verification:
    """The first event of seal `s` that differs from what the seal recorded."""
    prepare_session(conn)
    row: Any = conn.execute(
        "SELECT positions, marks FROM audit_seals WHERE position = %s", (s.position,)
    ).fetchone()
    sealed_positions = split_positions(bytes(row["positions"]))
    sealed_marks = list(iter_marks(bytes(row["marks"])))
    now = chain_with_marks(previous_hash, records_in_range(conn, previous_end, s.position))
    now_positions = split_positions(now.positions)
    now_marks = list(iter_marks(now.marks))

    def bad(position: int, problem: str, detail: str, index: int) -> Verification:
        return Verification(False, checked + index, last.position, last.hash.hex(), position, problem, detail)

    i = j = 0
    while i < len(sealed_positions) and j < len(now_positions):
        sealed_at, now_at = sealed_positions[i], now_positions[j]
        if sealed_at == now_at:
            if sealed_marks[i] != now_marks[j]:
                return bad(
                    now_at, "altered", f"the event at position {now_at} differs from the one sealed", j
                )
            i += 1
            j += 1
        elif sealed_at < now_at:
            return bad(sealed_at, "removed", f"the event sealed at position {sealed_at} is missing", j)
        else:
            return bad(now_at, "inserted", f"an event at position {now_at} was not in the sealed log", j)
    if i < len(sealed_positions):
        p = sealed_positions[i]
        return bad(p, "removed", f"the event sealed at position {p} is missing", j)
    if j < len(now_positions):
        p = now_positions[j]
        return bad(p, "inserted", f"an event at position {p} was not in the sealed log", j)
    return bad(
        s.position,
        "seal_damaged",
        f"the events match the seal at position {s.position} one by one, its hash does not: the seal"
        " itself was altered",
        j,
    )
