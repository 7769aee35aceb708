"""An answer as JSON rows, CSV or Parquet: the same conversions for the API and the CLI.

JSON keeps exactness: DECIMAL values and integers beyond 64 bits are strings (a sum of BIGINT
is a HUGEINT to DuckDB: a JSON number while it fits in 64 bits) (as usage values
are in the log), times are ISO 8601, UUIDs are strings; JSON columns stay JSON text."""

from __future__ import annotations

import base64
import csv
import io
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from infra.analytics.sandbox import InvalidQuery, QueryResult

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def plain(value: Any) -> Any:
    """A value as JSON can hold it without losing anything."""
    if value is None or isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):
        return value if INT64_MIN <= value <= INT64_MAX else str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return str(value)  # intervals (MonthDayNano) and anything else DuckDB may answer


def _whole(value: Any) -> Any:
    """HUGEINT (what DuckDB's sum of BIGINT gives) arrives as a Decimal: a whole number."""
    return plain(int(value)) if isinstance(value, Decimal) else plain(value)


def rows_of(result: QueryResult) -> list[list[Any]]:
    converters = [_whole if t in ("HUGEINT", "UHUGEINT") else plain for t in result.types]
    columns = [
        [convert(v) for v in result.table.column(i).to_pylist()]
        for i, convert in zip(range(result.table.num_columns), converters, strict=True)
    ]
    return [list(row) for row in zip(*columns, strict=True)] if columns else []


def as_json(result: QueryResult) -> dict[str, Any]:
    rows = rows_of(result)
    return {
        "columns": [{"name": n, "type": t} for n, t in zip(result.columns, result.types, strict=True)],
        "rows": rows,
        "row_count": len(rows),
        "truncated": result.truncated,
    }


def as_csv(result: QueryResult) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(result.columns)
    for row in rows_of(result):
        writer.writerow(["" if v is None else _csv_text(v) for v in row])
    return out.getvalue().encode()


def _csv_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        import orjson

        return orjson.dumps(value).decode()
    return str(value)


def as_parquet(result: QueryResult) -> bytes:
    sink = io.BytesIO()
    # Column names as the query gave them (Arrow keeps duplicates; Parquet readers may not).
    table = result.table.rename_columns(result.columns)
    try:
        pq.write_table(table, sink)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid) as error:
        raise InvalidQuery(f"the answer cannot be written as Parquet ({error}); cast that column") from None
    return sink.getvalue()
