"""The sandbox analysts' SQL runs in: one SELECT statement, no file or network access, a locked
configuration, a time limit and a row limit.

Two layers, so that a refusal is both early and certain: `check_statement` refuses anything but
a single SELECT before any data is touched (a clear message naming what was refused), and the
DuckDB database itself is locked down (`lock_down`) so that what a SELECT could still reach
(table functions such as read_csv, glob or read_text, URLs, extensions) fails on permission.
DuckDB has no statement timeout: a timer thread interrupts the query's own cursor."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from infra.analytics.errors import (
    AnalyticsError,
    InvalidQuery,
    QueryTimedOut,
    QueryTooLarge,
    StatementRefused,
)

__all__ = [
    "AnalyticsError",
    "InvalidQuery",
    "QueryResult",
    "QueryTimedOut",
    "QueryTooLarge",
    "StatementRefused",
    "check_statement",
    "lock_down",
    "run_query",
]

# Applied once, before any data is loaded: loading goes through Arrow objects registered by the
# engine, which needs no file access. `lock_configuration` last: nothing can undo the others.
LOCK_DOWN = (
    "SET TimeZone = 'UTC'",  # SPEC: time is UTC, and a timestamptz cast to date is a UTC day
    "SET enable_external_access = false",
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET allow_community_extensions = false",
    "SET allow_unsigned_extensions = false",
    # Without this, an unknown table name in SQL is looked up among the Python variables of the
    # calling frames (DuckDB's replacement scans): analysts could read the process's objects.
    "SET python_enable_replacements = false",
    "SET lock_configuration = true",
)


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    types: list[str]  # DuckDB type names
    table: pa.Table  # at most `limit` rows
    truncated: bool  # more rows were available than the limit


def lock_down(conn: duckdb.DuckDBPyConnection) -> None:
    for statement in LOCK_DOWN:
        conn.execute(statement)


def check_statement(sql: str) -> None:
    """Refuse anything but exactly one SELECT (WITH, VALUES, FROM-first, DESCRIBE, SHOW and
    SUMMARIZE are SELECTs to DuckDB)."""
    if not sql.strip():
        raise InvalidQuery("the query is empty")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as error:
        raise InvalidQuery(_first_line(error)) from None
    if len(statements) != 1:
        raise StatementRefused(f"send exactly one statement ({len(statements)} found)")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        # Name the statement as written (DuckDB files INSTALL under LOAD, USE under SET...).
        name = sql.strip().split(None, 1)[0].upper()
        raise StatementRefused(
            f"{name} statements are not allowed: analytics answers read-only SELECT queries"
        )


def run_query(
    conn: duckdb.DuckDBPyConnection, sql: str, *, limit: int, timeout_seconds: float
) -> QueryResult:
    """Run one checked SELECT on a cursor of its own, stopped after `timeout_seconds`, reading at
    most `limit` rows (one more tells whether there were more)."""
    cursor = conn.cursor()
    timed_out = threading.Event()

    def stop() -> None:
        timed_out.set()
        cursor.interrupt()

    timer = threading.Timer(timeout_seconds, stop)
    timer.daemon = True
    timer.start()
    try:
        relation = cursor.sql(sql)
        if relation is None:  # DuckDB answers None for statements without a result
            raise StatementRefused("the statement returns no rows")
        columns = list(relation.columns)
        types = [str(t) for t in relation.types]
        reader = relation.to_arrow_reader(min(max(limit + 1, 1), 65_536))
        batches: list[pa.RecordBatch] = []
        count = 0
        for batch in reader:
            batches.append(batch)
            count += batch.num_rows
            if count > limit:
                break
        table = pa.Table.from_batches(batches, schema=reader.schema)
        return QueryResult(columns, types, table.slice(0, limit), truncated=count > limit)
    except duckdb.InterruptException:
        if timed_out.is_set():
            raise QueryTimedOut(
                f"the query ran longer than {timeout_seconds:g} s and was stopped; "
                "narrow it (filters, fewer joins) or aggregate"
            ) from None
        raise
    except duckdb.PermissionException as error:
        raise StatementRefused(
            f"file, network and extension access is disabled in analytics ({_first_line(error)})"
        ) from None
    except duckdb.OutOfMemoryException:
        raise QueryTooLarge(
            "the query needs more memory than analytics may use; aggregate or filter"
        ) from None
    except (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException) as error:
        raise InvalidQuery(_first_line(error)) from None
    except (duckdb.ConversionException, duckdb.InvalidInputException, duckdb.OutOfRangeException) as error:
        raise InvalidQuery(f"the query failed: {_first_line(error)}") from None
    finally:
        timer.cancel()
        cursor.close()


def _first_line(error: BaseException) -> str:
    """DuckDB messages add a caret diagram of the SQL after the first lines; keep the message."""
    text = str(error).strip()
    return text.split("\n\n", 1)[0].strip()
