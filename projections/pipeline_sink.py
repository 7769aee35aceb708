"""A bulk statement sink for the projectors: their handlers write through it exactly as through
a cursor (`execute(sql, params)`), but statements go out as libpq prepared statements in
pipeline mode, text-encoded here. That removes most of the driver's per-statement Python work,
which is what bounds a replay (the server does the same work either way).

It drives the connection at the libpq level between psycopg calls: psycopg must not be used on
that connection while a sink is open.

Whether its prepared statements may outlive the batch depends on who else prepares on that
session. psycopg sends `DEALLOCATE ALL` whenever a transaction rolls back (or a DROP or ALTER
runs) on a connection where it prepared statements of its own, which it does by itself for any
query run a few times. A sink that remembered its statements from one batch to the next on such
a connection sent, sooner or later, an EXECUTE for a statement the server no longer had
("prepared statement ledger_projection_N does not exist"), on every batch that connection served
after that (observation 4: the sealer's `LOCK ... NOWAIT` rolls back on the shared pool while
writers append). So:

- on a connection where psycopg never prepares (`prepare_threshold=None`, as the read side's
  pool opens them), the sink keeps its statements for the connection's life: preparing them
  again for every small batch would cost a live projector much of its speed;
- on any other connection, its statements live exactly as long as the sink;
- a batch that fails forgets and closes the connection's statements (a Parse queued behind a
  failed statement is skipped, and the failure may be a statement that vanished); names are never
  reused, so nothing left behind can clash."""

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
import psycopg
from psycopg import Connection, pq
from psycopg.types.json import Jsonb

PLACEHOLDER = re.compile(r"%s")


class StatementFailed(Exception):
    """A statement of the batch failed; `sqlstate` is PostgreSQL's error code (may be empty)."""

    def __init__(self, message: str, sqlstate: str = "") -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def statement_error(message: str, sqlstate: str) -> Exception:
    """The error as psycopg would have raised it (a `DataError`, an `IntegrityError`, an
    `OperationalError`...), so callers can tell a bad event from a passing failure."""
    try:
        error_class = psycopg.errors.lookup(sqlstate)
    except KeyError:
        return StatementFailed(message, sqlstate)
    return error_class(message)


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


# Never reused within a process: a statement left behind by a broken session can never clash.
_statement_numbers = itertools.count()

# What sinks prepared on connections where psycopg prepares nothing (weak: gone with the connection).
_kept: weakref.WeakKeyDictionary[Connection[Any], dict[str, bytes]] = weakref.WeakKeyDictionary()


class PipelineSink:
    """Statements of one batch. With `transaction=True` (an autocommit connection it alone
    drives) it wraps them in BEGIN/COMMIT; with False they run inside the transaction the caller
    opened with psycopg, which commits it (the checkpoint with the rows)."""

    SYNC_EVERY = 2000

    def __init__(self, conn: Connection[Any], *, transaction: bool) -> None:
        if transaction and not conn.autocommit:
            raise ValueError("a sink that drives its own transaction needs an autocommit connection")
        self.pg = conn.pgconn
        self.keep = conn.prepare_threshold is None  # psycopg will never DEALLOCATE ALL here
        self.names: dict[str, bytes] = _kept.setdefault(conn, {}) if self.keep else {}
        self.transaction = transaction
        self.pending = 0

    def __enter__(self) -> PipelineSink:
        self.pg.enter_pipeline_mode()
        if self.transaction:
            self.pg.send_query_params(b"BEGIN", None)
        return self

    def __exit__(self, kind: object, error: object, tb: object) -> None:
        names = list(self.names.values())
        try:
            if error is None:
                if not self.keep:
                    self._send_close(names)
                if self.transaction:
                    self.pg.send_query_params(b"COMMIT", None)
                try:
                    self._sync()
                except Exception:
                    self._forget(names)
                    raise
                if not self.keep:
                    self.names.clear()
            else:
                if self.transaction:
                    self.pg.send_query_params(b"ROLLBACK", None)
                with contextlib.suppress(Exception):
                    self._sync()
                self._forget(names)
        finally:
            self.pg.exit_pipeline_mode()

    def _forget(self, names: list[bytes]) -> None:
        """After a failure nothing the sink prepared is trusted: closed (a protocol message, so
        it works in an aborted transaction too, and closing a statement whose Parse was skipped
        is no error) and forgotten."""
        self.names.clear()
        with contextlib.suppress(Exception):
            self._send_close(names)
            self._sync()

    def _send_close(self, names: list[bytes]) -> None:
        for name in names:
            self.pg.send_close_prepared(name)

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
        failure: Exception | None = None
        while True:
            result = self.pg.get_result()
            if result is None:
                continue
            if result.status == pq.ExecStatus.PIPELINE_SYNC:
                break
            if result.status == pq.ExecStatus.FATAL_ERROR and failure is None:
                message = (result.error_message or b"").decode(errors="replace").strip()
                sqlstate = (result.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode()
                failure = statement_error(message, sqlstate)
        self.pending = 0
        if failure is not None:
            raise failure
