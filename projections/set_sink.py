"""Set-based writing of a batch of events: the handlers' statements are collected, then sent as
one multi-row statement per SQL text and level instead of one statement per event.

Why it is safe. The events of one message key (a customer, else the stream) are applied in log
order; the events of different keys commute: that is what lets Kafka partitions be consumed in
parallel, and every handler relies on it already (a handler only reads and writes rows of its own
key). So a statement gets a level, its index among the statements of its key in the batch; the
levels run in order and, inside a level, where every key has at most one statement, statements
of the same SQL text run as one. Each key still sees its statements in the order its handlers
sent them.

How a statement becomes multi-row. The handler's SQL is rewritten once per text: its parameters
become columns of `unnest($1::type[], ...) AS _a(p1, ...)`, joined to the statement (`INSERT ...
VALUES (...)` becomes `INSERT ... SELECT ... FROM unnest(...)`, `UPDATE ... WHERE` gains `FROM
unnest(...)`, `INSERT ... SELECT ... FROM x` gains `unnest(...) CROSS JOIN x`). The parameter
types are the ones PostgreSQL infers for the handler's own statement (asked once per process). A
text it cannot rewrite runs row by row, as before."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Hashable, Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
from psycopg import Connection, pq
from psycopg.types.json import Jsonb

from projections.pipeline_sink import PLACEHOLDER, PipelineSink, statement_error

# Well-known type oids; anything else is named by the server.
_TYPE_NAMES = {
    16: "boolean",
    20: "bigint",
    21: "smallint",
    23: "integer",
    25: "text",
    114: "json",
    700: "real",
    701: "double precision",
    1043: "text",
    1082: "date",
    1114: "timestamp",
    1184: "timestamptz",
    1700: "numeric",
    2950: "uuid",
    3802: "jsonb",
}


class _SetForm:
    """A handler statement and its multi-row form (None when it has none)."""

    __slots__ = ("set_sql", "sql")

    def __init__(self, sql: str, set_sql: str | None) -> None:
        self.sql = sql
        self.set_sql = set_sql


_FORMS: dict[str, _SetForm] = {}


def _scan_top_level(sql: str) -> list[tuple[int, str]]:
    """(offset, upper-cased word) of every word outside parentheses and string literals."""
    found: list[tuple[int, str]] = []
    depth = 0
    i = 0
    n = len(sql)
    while i < n:
        ch = sql[i]
        if ch == "'":
            i += 1
            while i < n:
                if sql[i] == "'":
                    if i + 1 < n and sql[i + 1] == "'":
                        i += 2
                        continue
                    break
                i += 1
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif (
            depth == 0
            and (ch.isalpha() or ch == "_")
            and (i == 0 or not (sql[i - 1].isalnum() or sql[i - 1] in "_."))
        ):
            j = i
            while j < n and (sql[j].isalnum() or sql[j] == "_"):
                j += 1
            found.append((i, sql[i:j].upper()))
            i = j
            continue
        i += 1
    return found


def _split_top_level_commas(clause: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    start = 0
    in_string = False
    for i, ch in enumerate(clause):
        if ch == "'":
            in_string = not in_string
        elif in_string:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(clause[start:i])
            start = i + 1
    parts.append(clause[start:])
    return [p.strip() for p in parts]


_CLAUSE_ENDS = ("WHERE", "GROUP", "ORDER", "LIMIT", "RETURNING")


def rewrite(sql: str, types: Sequence[str]) -> str | None:
    """The multi-row form of `sql` whose placeholders have `types`, or None."""
    count = iter(range(1, len(types) + 1))
    body = PLACEHOLDER.sub(lambda _: f"_a.p{next(count)}", sql)
    source = (
        "unnest("
        + ", ".join(f"%s::{t}[]" for t in types)
        + ") AS _a("
        + ", ".join(f"p{i}" for i in range(1, len(types) + 1))
        + ")"
    )
    words = _scan_top_level(body)
    names = [w for _, w in words]
    if not names:
        return None
    if names[:2] == ["INSERT", "INTO"]:
        if "VALUES" in names:
            at = words[names.index("VALUES")][0]
            rest = body[at + len("VALUES") :].lstrip()
            if not rest.startswith("("):
                return None
            depth = 0
            end = 0
            for end, ch in enumerate(rest):  # noqa: B007 - where the tuple closes
                depth += ch == "("
                depth -= ch == ")"
                if depth == 0:
                    break
            values, tail = rest[1:end], rest[end + 1 :]
            if tail.strip().startswith(","):
                return None  # several rows already
            return f"{body[:at]}SELECT {values} FROM {source}{tail}"
        if "SELECT" in names and "FROM" in names:
            return _with_source_first(body, words, source)
        return None
    if names[0] == "UPDATE" and "SET" in names and "WHERE" in names:
        where = words[names.index("WHERE")][0]
        after_set = [(at, w) for at, w in words if at > words[names.index("SET")][0]]
        from_at = next((at for at, w in after_set if w == "FROM" and at < where), None)
        if from_at is not None:
            # The parameters' rows first, and sub-queries LATERAL so that they may read them.
            items = _split_top_level_commas(body[from_at + len("FROM") : where])
            joined = ", ".join(f"LATERAL {item}" if item.startswith("(") else item for item in items)
            return f"{body[:from_at]}FROM {source}, {joined} {body[where:]}"
        return f"{body[:where]}FROM {source} {body[where:]}"
    return None


def _with_source_first(body: str, words: list[tuple[int, str]], source: str) -> str | None:
    """`INSERT ... SELECT ... FROM a, (VALUES ...) l WHERE ...` with the parameters' rows joined
    first, so every item may read them (sub-queries become LATERAL)."""
    select_at = next(at for at, w in words if w == "SELECT")
    from_word = next(((at, w) for at, w in words if w == "FROM" and at > select_at), None)
    if from_word is None:
        return None
    start = from_word[0] + len("FROM")
    end = next(
        (
            at
            for n, (at, w) in enumerate(words)
            if at > start
            and (w in _CLAUSE_ENDS or (w == "ON" and n + 1 < len(words) and words[n + 1][1] == "CONFLICT"))
        ),
        len(body),
    )
    items = _split_top_level_commas(body[start:end])
    joined = " CROSS JOIN ".join(f"LATERAL {item}" if item.startswith("(") else item for item in items)
    return f"{body[:start]} {source} CROSS JOIN {joined} {body[end:]}"


def _form(conn: Connection[Any], sql: str) -> _SetForm:
    form = _FORMS.get(sql)
    if form is None:
        types = _parameter_types(conn, sql)
        set_sql = rewrite(sql, types) if types else None
        if set_sql is not None and not _accepted(conn, set_sql):
            set_sql = None  # a form the server refuses: this text runs row by row, as before
        form = _FORMS[sql] = _SetForm(sql, set_sql)
    return form


def _accepted(conn: Connection[Any], set_sql: str) -> bool:
    """Whether PostgreSQL parses and plans the multi-row form (prepared, never run, inside a
    savepoint so that a refusal leaves the caller's transaction usable). The rewriting reads
    SQL as text; the server has the last word on what it means."""
    pg = conn.pgconn
    count = iter(range(1, 1000))
    numbered = PLACEHOLDER.sub(lambda _: f"${next(count)}", set_sql)
    name = f"ledger_check_{abs(hash(set_sql))}".encode()
    in_transaction = pg.transaction_status == pq.TransactionStatus.INTRANS
    if in_transaction:
        _check(pg.exec_(b"SAVEPOINT ledger_set_form"))
    result = pg.prepare(name, numbered.encode())
    refused = result.status in (pq.ExecStatus.FATAL_ERROR, pq.ExecStatus.NONFATAL_ERROR)
    if not refused:
        _check(pg.exec_(b"DEALLOCATE " + name))
    if in_transaction:
        if refused:
            _check(pg.exec_(b"ROLLBACK TO SAVEPOINT ledger_set_form"))
        _check(pg.exec_(b"RELEASE SAVEPOINT ledger_set_form"))
    return not refused


def _parameter_types(conn: Connection[Any], sql: str) -> list[str]:
    """The types PostgreSQL infers for the statement's parameters (asked outside any pipeline,
    inside the caller's transaction)."""
    pg = conn.pgconn
    count = iter(range(1, 1000))
    numbered = PLACEHOLDER.sub(lambda _: f"${next(count)}", sql)
    name = f"ledger_describe_{abs(hash(sql))}".encode()
    result = pg.prepare(name, numbered.encode())
    _check(result)
    try:
        described = pg.describe_prepared(name)
        _check(described)
        oids = [described.param_type(i) for i in range(described.nparams)]
    finally:
        _check(pg.exec_(b"DEALLOCATE " + name))
    names = []
    for oid in oids:
        known = _TYPE_NAMES.get(oid)
        if known is None:
            found = pg.exec_params(b"SELECT format_type($1::oid, NULL)", [str(oid).encode()])
            _check(found)
            value = found.get_value(0, 0)
            known = value.decode() if value else "text"
        if known == "unknown":
            known = "text"
        names.append(known)
    return names


def _check(result: pq.abc.PGresult) -> None:
    if result.status in (pq.ExecStatus.FATAL_ERROR, pq.ExecStatus.NONFATAL_ERROR):
        message = (result.error_message or b"").decode(errors="replace").strip()
        sqlstate = (result.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode()
        raise statement_error(message, sqlstate)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _json_text(value: Any) -> str:
    if type(value) is Jsonb:
        return orjson.dumps(value.obj).decode()
    return orjson.dumps(value).decode()


def _bytes_text(value: bytes) -> str:
    return value.decode()


# How an element of each type is written. Text of any origin is quoted, whatever the column's
# type: a malformed value must fail as it would alone, never split the array.
_ELEMENT: dict[type, Callable[[Any], str]] = {
    str: _quote,
    int: int.__repr__,
    bool: lambda v: "t" if v else "f",
    UUID: UUID.__str__,
    Decimal: Decimal.__str__,
    datetime: datetime.isoformat,
    date: date.isoformat,
    Jsonb: lambda v: _quote(_json_text(v)),
    dict: lambda v: _quote(_json_text(v)),
    list: lambda v: _quote(_json_text(v)),
    bytes: lambda v: _quote(_bytes_text(v)),
}


def _element(value: Any) -> str:
    if value is None:
        return "NULL"
    try:
        return _ELEMENT[type(value)](value)
    except KeyError:
        raise TypeError(f"cannot send a {type(value).__name__} as a statement parameter") from None


def array_literal(values: Sequence[Any]) -> bytes:
    """A PostgreSQL array literal of `values` (None is NULL)."""
    kinds = set(map(type, values))
    if len(kinds) == 1:
        write = _ELEMENT.get(kinds.pop())
        if write is not None:
            return ("{" + ",".join(map(write, values)) + "}").encode()
    return ("{" + ",".join(map(_element, values)) + "}").encode()


_EARLY: dict[str, bool] = {}


def inserts_values_only(sql: str) -> bool:
    """Whether `sql` only inserts the row it is given (`INSERT ... VALUES`, no sub-query, nothing
    done on conflict). Such a statement reads nothing another statement writes, and what it
    writes is only ever read or changed by later events (a row is created before it changes):
    it may run before the rest of the batch."""
    words = [w for _, w in _scan_top_level(sql)]
    if words[:2] != ["INSERT", "INTO"] or "VALUES" not in words or "SELECT" in sql.upper():
        return False
    if "ON" not in words:
        return True
    tail = words[words.index("ON") :]
    return tail[:2] == ["ON", "CONFLICT"] and tail[-2:] == ["DO", "NOTHING"]


class SetSink:
    """Collects the statements of a batch (an `Executor` for the handlers), then writes them
    set-based through a `PipelineSink` on `flush`. Call `begin(key)` before each event's
    handlers run, `key` being the event's message key.

    Each key keeps a queue of its events' statements. Writing goes in rounds: a round takes the
    kind of event (its sequence of SQL texts) found at the head of the most queues, writes it
    for all those keys at once (one statement per SQL text), and pops it from their queues. So
    each key's statements keep their order, and keys at the same step of their lifecycle (an
    invoice finalized, a payment applied) are written together."""

    def __init__(self) -> None:
        self._early: dict[str, list[Sequence[Any]]] = {}
        self._queues: dict[Hashable, deque[_Event]] = {}
        self._event: _Event | None = None
        self._key: Hashable = None

    def begin(self, key: Hashable) -> None:
        self._key = key
        self._event = None  # queued at its first ordered statement

    def execute(self, query: str, params: Sequence[Any] = ()) -> None:
        early = _EARLY.get(query)
        if early is None:
            early = _EARLY[query] = inserts_values_only(query)
        if early:
            rows = self._early.get(query)
            if rows is None:
                self._early[query] = [params]
            else:
                rows.append(params)
            return
        event = self._event
        if event is None:
            event = self._event = _Event()
            queue = self._queues.get(self._key)
            if queue is None:
                self._queues[self._key] = deque((event,))
            else:
                queue.append(event)
        event.sqls.append(query)
        event.params.append(params)

    def rounds(self) -> Iterator[list[tuple[str, list[Sequence[Any]]]]]:
        """The statements to send, as groups (one SQL text, its rows) in the order to send them."""
        if self._early:
            yield list(self._early.items())
        heads: dict[tuple[str, ...], list[Hashable]] = defaultdict(list)
        for key, queue in self._queues.items():
            heads[queue[0].signature()].append(key)
        while heads:
            signature = max(heads, key=lambda s: len(heads[s]))
            keys = heads.pop(signature)
            events = [self._queues[key].popleft() for key in keys]
            yield [(sql, [e.params[i] for e in events]) for i, sql in enumerate(signature)]
            for key in keys:
                queue = self._queues[key]
                if queue:
                    heads[queue[0].signature()].append(key)

    def flush(self, conn: Connection[Any]) -> None:
        """Send everything collected, in the caller's transaction."""
        rounds = list(self.rounds())
        forms = {sql: _form(conn, sql) for groups in rounds for sql, rows in groups if len(rows) > 1}
        with PipelineSink(conn, transaction=False) as sink:
            for groups in rounds:
                for sql, rows in groups:
                    form = forms.get(sql) if len(rows) > 1 else None
                    if form is None or form.set_sql is None:
                        for row in rows:
                            sink.execute(sql, tuple(row))
                    else:
                        sink.execute(
                            form.set_sql, [array_literal(column) for column in zip(*rows, strict=True)]
                        )
        self._early.clear()
        self._queues.clear()


class _Event:
    __slots__ = ("params", "sqls")

    def __init__(self) -> None:
        self.sqls: list[str] = []
        self.params: list[Sequence[Any]] = []

    def signature(self) -> tuple[str, ...]:
        return tuple(self.sqls)
