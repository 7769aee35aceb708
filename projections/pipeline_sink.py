"""A bulk statement sink for `ledger replay`: the projectors' handlers write through it exactly
as through a cursor (`execute(sql, params)`), but statements go out as libpq prepared
statements in pipeline mode, text-encoded here. That removes most of the driver's per-statement
Python work, which is what bounds a replay (the server does the same work either way).

It drives the connection at the libpq level between psycopg calls: psycopg must not be used on
that connection while a sink is open."""

from __future__ import annotations

import contextlib
import itertools
import re
import weakref
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
from psycopg import Connection, pq
from psycopg.types.json import Jsonb

PLACEHOLDER = re.compile(r"%s")


class StatementFailed(Exception):
    pass


# By exact type: one dictionary lookup and one call per parameter.
ENCODERS: dict[type, Any] = {
    str: str.encode,
    int: lambda v: b"%d" % v,
    bool: lambda v: b"t" if v else b"f",
    UUID: lambda v: str(v).encode(),
    Decimal: lambda v: str(v).encode(),
    datetime: lambda v: v.isoformat().encode(),
    date: lambda v: v.isoformat().encode(),
    Jsonb: lambda v: orjson.dumps(v.obj),
    dict: orjson.dumps,
    list: orjson.dumps,
    bytes: lambda v: v,
}


def _encode(value: Any) -> bytes | None:
    if value is None:
        return None
    try:
        encoded: bytes = ENCODERS[type(value)](value)
    except KeyError:
        raise TypeError(f"cannot send a {type(value).__name__} as a statement parameter") from None
    return encoded


_prepared_by_connection: weakref.WeakKeyDictionary[Connection[Any], dict[str, bytes]] = (
    weakref.WeakKeyDictionary()
)


# Statement names are never reused in a process: after a failure the cache is dropped (below) and
# statements are prepared again under new names, whether or not the old ones still exist.
_statement_numbers = itertools.count()


def prepared_on(conn: Connection[Any]) -> dict[str, bytes]:
    """The statements this sink prepared on a connection (they live as long as its session)."""
    return _prepared_by_connection.setdefault(conn, {})


class PipelineSink:
    """Statements of one batch. With `transaction=True` (an autocommit connection it alone
    drives) it wraps them in BEGIN/COMMIT; with False they run inside the transaction the caller
    opened with psycopg, which commits it (the checkpoint with the rows)."""

    SYNC_EVERY = 2000

    def __init__(self, conn: Connection[Any], *, transaction: bool) -> None:
        if transaction and not conn.autocommit:
            raise ValueError("a sink that drives its own transaction needs an autocommit connection")
        self.pg = conn.pgconn
        self.names = prepared_on(conn)
        self.transaction = transaction
        self.pending = 0

    def __enter__(self) -> PipelineSink:
        self.pg.enter_pipeline_mode()
        if self.transaction:
            self.pg.send_query_params(b"BEGIN", None)
        return self

    def __exit__(self, kind: object, error: object, tb: object) -> None:
        try:
            if error is None:
                if self.transaction:
                    self.pg.send_query_params(b"COMMIT", None)
                self._sync()
            else:
                if self.transaction:
                    self.pg.send_query_params(b"ROLLBACK", None)
                with contextlib.suppress(StatementFailed):
                    self._sync()
        finally:
            self.pg.exit_pipeline_mode()

    def execute(self, query: str, params: tuple[Any, ...] | list[Any] = ()) -> None:
        name = self.names.get(query)
        if name is None:
            name = f"ledger_projection_{next(_statement_numbers)}".encode()
            count = iter(range(1, 1000))
            numbered = PLACEHOLDER.sub(lambda _: f"${next(count)}", query)
            self.pg.send_prepare(name, numbered.encode())
            self.names[query] = name
        encoders = ENCODERS
        try:
            values = [None if p is None else encoders[type(p)](p) for p in params]
        except KeyError:
            values = [_encode(p) for p in params]  # names the type that cannot be sent
        self.pg.send_query_prepared(name, values)
        self.pending += 1
        if self.pending >= self.SYNC_EVERY:
            self._sync()

    def _sync(self) -> None:
        self.pg.pipeline_sync()
        self.pg.flush()
        failure: str | None = None
        while True:
            result = self.pg.get_result()
            if result is None:
                continue
            if result.status == pq.ExecStatus.PIPELINE_SYNC:
                break
            if result.status == pq.ExecStatus.FATAL_ERROR and failure is None:
                failure = (result.error_message or b"").decode(errors="replace")
        self.pending = 0
        if failure is not None:
            # What this connection has prepared is unknown now: after an error the server skips
            # the rest of the pipeline (Parse messages too), and a psycopg rollback on a
            # connection with statements of its own sends DEALLOCATE ALL. Prepared again next time.
            self.names.clear()
            raise StatementFailed(failure)
