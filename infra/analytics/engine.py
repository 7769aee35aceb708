"""The analytics engine: an in-process DuckDB holding copies of the log and the read models,
refreshed incrementally, answering sandboxed queries.

A process keeps one engine (the API keeps one per worker) so a query does not copy the log
again: a refresh appends only the events above the position already held, and replaces the
read-model tables whole. A refresh happens when a query asks for a position not held yet
(`min_position`), or when the copy is older than `max_staleness_seconds` and the source moved.
The events are loaded only once a query needs them (`events`, `usage`), so a question about
customers or invoices never waits for the whole log to be copied.

Refreshes run under a lock and in one DuckDB transaction: queries running meanwhile keep
reading the previous copy (DuckDB's MVCC), and never see half a refresh."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from infra.analytics.sandbox import QueryResult, check_statement, lock_down, run_query
from infra.analytics.source import AnalyticsSource, ArrowData, Snapshot
from infra.analytics.views import VIEWS, views_over

EVENTS = "events"
# The raw tables each view name reads, so a query loads only what it names.
SOURCES_OF_NAME = {view.name: view.sources for view in VIEWS}


@dataclass(frozen=True)
class Answer:
    result: QueryResult
    position: int  # every event up to this position was in the data queried
    read_models_position: int  # the position the read models had applied when copied


DEFAULT_MEMORY_LIMIT = "128MB"


def analytics_temp_directory(data_dir: Path) -> Path:
    """Where a process's DuckDB spills what its memory limit does not hold: one directory per
    process (DuckDB's temporary files are not shared)."""
    return data_dir / "analytics-tmp" / str(os.getpid())


class AnalyticsEngine:
    """`memory_limit` bounds DuckDB's buffer manager (the copies and the queries' working memory):
    beyond it DuckDB spills to `temp_directory` (the engine's own: removed on close; a new
    temporary directory when none is given), so a copy of a log larger than the limit still loads
    and answers."""

    def __init__(
        self,
        source: AnalyticsSource,
        *,
        max_staleness_seconds: float = 5.0,
        memory_limit: str = DEFAULT_MEMORY_LIMIT,
        temp_directory: Path | None = None,
    ) -> None:
        self.source = source
        self.max_staleness_seconds = max_staleness_seconds
        self.position = 0  # events held: every event up to here (when events are loaded)
        self.read_models_position = 0
        self.events_loaded = False
        self._raw_tables: set[str] = set()
        self._refreshed_at: float | None = None
        self._lock = threading.Lock()
        self.temp_directory = temp_directory or Path(tempfile.mkdtemp(prefix="ledger-analytics-"))
        self.temp_directory.mkdir(parents=True, exist_ok=True)
        self._db = duckdb.connect(
            ":memory:", config={"memory_limit": memory_limit, "temp_directory": str(self.temp_directory)}
        )
        self._db.execute("CREATE SCHEMA raw")
        lock_down(self._db)

    def close(self) -> None:
        self._db.close()
        shutil.rmtree(self.temp_directory, ignore_errors=True)

    # ------------------------------------------------------------------ queries

    def query(
        self, sql: str, *, limit: int, timeout_seconds: float, min_position: int | None = None
    ) -> Answer:
        check_statement(sql)  # before any copy: a refused statement costs nothing
        self.ensure_fresh(min_position, needs_events=self._names_events(sql))
        position, read_models_position = self.position, self.read_models_position
        result = run_query(self._db, sql, limit=limit, timeout_seconds=timeout_seconds)
        return Answer(result, position, read_models_position)

    @staticmethod
    def _names_events(sql: str) -> bool:
        try:
            names = duckdb.get_table_names(sql, qualified=False)
        except duckdb.Error:
            return True  # let the query itself report what is wrong, with everything loaded
        return any(EVENTS in SOURCES_OF_NAME.get(name, (name,)) for name in names)

    # ------------------------------------------------------------------ refreshes

    def ensure_fresh(self, min_position: int | None = None, *, needs_events: bool = True) -> None:
        with self._lock:
            if needs_events and not self.events_loaded:
                self._refresh(with_events=True)
            elif self._refreshed_at is None or (min_position is not None and min_position > self.position):
                self._refresh(with_events=self.events_loaded)
            elif time.monotonic() - self._refreshed_at >= self.max_staleness_seconds:
                if self.source.head() > self.position or self.read_models_position < self.position:
                    self._refresh(with_events=self.events_loaded)
                else:
                    self._refreshed_at = time.monotonic()

    def refresh(self) -> None:
        """Copy what is new now (the events too)."""
        with self._lock:
            self._refresh(with_events=True)

    def _refresh(self, *, with_events: bool) -> None:
        after = (self.position if self.events_loaded else 0) if with_events else None
        with self.source.read(events_after=after) as snapshot:
            self._load(snapshot, with_events=with_events)
        self.position = snapshot.position
        self.read_models_position = snapshot.read_models_position
        self.events_loaded = self.events_loaded or with_events
        self._refreshed_at = time.monotonic()

    def _load(self, snapshot: Snapshot, *, with_events: bool) -> None:
        cursor = self._db.cursor()
        tables = dict(snapshot.read_models)
        cursor.execute("BEGIN TRANSACTION")
        try:
            if snapshot.events is not None:  # first: the read models' streams come after it
                self._append_events(cursor, snapshot.events)
            for name, copy in tables.items():
                _replace_table(cursor, name, copy())
            for gone in self._raw_tables - set(tables) - {EVENTS}:
                cursor.execute(f'DROP TABLE raw."{gone}"')
            present = set(tables) | ({EVENTS} if with_events or self.events_loaded else set())
            for view in VIEWS:
                cursor.execute(f'DROP VIEW IF EXISTS "{view.name}"')
            for view in views_over(present):
                cursor.execute(f'CREATE VIEW "{view.name}" AS {view.select}')
            cursor.execute("COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        finally:
            cursor.close()
        self._raw_tables = present

    def _append_events(self, cursor: duckdb.DuckDBPyConnection, events: ArrowData) -> None:
        # DuckDB reads the stream batch by batch into its own storage (within its memory limit,
        # spilling beyond it): the log is never whole in memory outside DuckDB.
        cursor.register("incoming", events)
        try:
            if EVENTS in self._raw_tables:
                cursor.execute("INSERT INTO raw.events BY NAME SELECT * FROM incoming")
            else:
                cursor.execute("CREATE OR REPLACE TABLE raw.events AS SELECT * FROM incoming")
        finally:
            cursor.unregister("incoming")


def _replace_table(cursor: duckdb.DuckDBPyConnection, name: str, table: ArrowData) -> None:
    cursor.register("incoming", table)
    try:
        cursor.execute(f'CREATE OR REPLACE TABLE raw."{name}" AS SELECT * FROM incoming')
    finally:
        cursor.unregister("incoming")
