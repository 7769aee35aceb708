"""Dependencies shared by the routers, as Annotated aliases."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg import Connection
from starlette.requests import HTTPConnection

from api.errors import ApiProblem
from application.commands import CommandContext
from application.ledger import Ledger
from application.outcome import Outcome
from domain import ids
from domain.business_time import check_business_time
from infra.bootstrap import CORE_PROJECTION, Container
from infra.keys import Principal
from projections import known_at as known
from projections.runner import wait_for_position
from projections.snapshots import known_at_snapshot, reading_snapshot

# The dependencies that only look things up are `async def`: FastAPI runs a plain `def`
# dependency in a worker thread, and the hops there and back cost more than what they do.


async def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


def ledger_now(request: Request) -> datetime:
    """The ledger's now (a test clock's, where one moved it): what business time is checked against."""
    container: Container = request.app.state.container
    return container.ledger.now()


def ledger_today(request: Request) -> date:
    """The UTC day of the ledger's now: what "today" means in queries."""
    return ledger_now(request).date()


Now = Annotated[datetime, Depends(ledger_now)]
Today = Annotated[date, Depends(ledger_today)]


ContainerDep = Annotated[Container, Depends(get_container)]


async def get_ledger(container: ContainerDep) -> Ledger:
    return container.ledger


LedgerDep = Annotated[Ledger, Depends(get_ledger)]


# Declares the scheme in the OpenAPI document (per operation, through the dependency); the
# header itself is checked below, so a malformed one gets the same 401 problem as a missing one.
class _DeclaredBearer(HTTPBearer):
    """HTTPBearer for the document only: the header is read by `principal_of`, so the request
    need not be parsed into credentials a second time (nobody reads them)."""

    async def __call__(self, request: HTTPConnection) -> HTTPAuthorizationCredentials | None:
        return None


bearer_scheme = _DeclaredBearer(
    auto_error=False, scheme_name="bearerAuth", description="an API key minted by an admin"
)
BearerDeclared = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


async def bearer_authorization(request: Request, _: BearerDeclared) -> str | None:
    return request.headers.get("authorization")


def principal_of(container: Container, authorization: str | None) -> Principal:
    """Who the `Authorization` header names (401 if nobody). A known key is a cache hit (see
    KeyStore), so this runs on the event loop."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiProblem(
            401,
            "Unauthorized",
            "send 'Authorization: Bearer <key>'",
            code="unauthorized",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = container.keys.authenticate(token.strip())
    if principal is None:
        raise ApiProblem(
            401,
            "Unauthorized",
            "the key is unknown or revoked",
            code="unauthorized",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


async def get_principal(
    container: ContainerDep, authorization: Annotated[str | None, Depends(bearer_authorization)] = None
) -> Principal:
    return principal_of(container, authorization)


def permitted(principal: Principal, permission: str) -> Principal:
    """The principal, if it may do this (else 403)."""
    if not principal.may(permission):
        raise ApiProblem(
            403,
            "Forbidden",
            f"a {principal.role} key may not do this ({permission} needed)",
            code="forbidden",
        )
    return principal


def require(permission: str) -> Callable[..., Any]:
    # One dependency (beside the scheme's declaration) rather than a chain of them through
    # get_principal: FastAPI's resolution of each costs more than what it does, on every request.
    async def check(request: Request, _: BearerDeclared) -> Principal:
        container: Container = request.app.state.container
        return permitted(principal_of(container, request.headers.get("authorization")), permission)

    return check


AdminKey = Annotated[Principal, Depends(require("admin"))]
ReadKey = Annotated[Principal, Depends(require("read"))]
AuditKey = Annotated[Principal, Depends(require("audit"))]


def read_connection(
    container: ContainerDep,
    _: ReadKey,
    min_position: Annotated[
        int | None, Query(ge=0, description="wait until this position is visible")
    ] = None,
) -> Iterator[Connection[Any]]:
    """A connection to the read models, after waiting (bounded) for `min_position`."""
    wait_for_read_models(container, min_position)
    with container.pool.connection() as conn:
        yield conn


def wait_for_read_models(
    container: Container,
    min_position: int | None,
    projection: str = CORE_PROJECTION,
    reader: str = "the read models have",
) -> None:
    """Read-your-writes: wait (bounded) until `projection` has applied `min_position`; `reader`
    names it, with its verb, in the 503's detail."""
    if min_position is not None and min_position > 0:
        head = container.ledger.store.max_notification_id() or 0
        if min_position > head:
            # Nothing was ever written there: waiting could only end in a 503.
            raise ApiProblem(
                422,
                "Position not found",
                f"position {min_position} is beyond the log's head ({head}): pass one a write answered",
                code="position_not_found",
                errors=[{"field": "min_position", "message": f"at most {head}, the log's head"}],
            )
        container.wake_projection()
        timeout = container.settings.read_wait_timeout_seconds
        if not wait_for_position(container.pool, projection, min_position, timeout):
            raise ApiProblem(
                503,
                "Not yet visible",
                f"{reader} not reached position {min_position} within {timeout:g}s",
                code="projection_lagging",
                headers={"Retry-After": "1"},
            )


ReadConn = Annotated[Connection[Any], Depends(read_connection)]


def entitled_connection(
    container: ContainerDep,
    principal: Annotated[Principal, Depends(get_principal)],
    customer_id: UUID,
    min_position: Annotated[
        int | None, Query(ge=0, description="wait until this position is visible")
    ] = None,
) -> Iterator[Connection[Any]]:
    """Like ReadConn, and also open to an ingest key scoped to the customer in the path (an
    on-premise instance asking whether it may go on, or for its status)."""
    own_key = principal.customer_id is not None and principal.customer_id == customer_id
    if not (principal.may("read") or own_key):
        raise ApiProblem(
            403,
            "Forbidden",
            f"a {principal.role} key may not read this customer (its own key, or read, needed)",
            code="forbidden",
        )
    wait_for_read_models(container, min_position)
    with container.pool.connection() as conn:
        yield conn


EntitledConn = Annotated[Connection[Any], Depends(entitled_connection)]


def request_fingerprint(request: Request, body: Any) -> str:
    """What makes two requests 'the same' for an idempotency key: method, path and the body."""
    payload = body.model_dump(mode="json") if hasattr(body, "model_dump") else body
    raw = orjson.dumps([request.method, request.url.path, payload], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(raw).hexdigest()


def command_context(
    request: Request,
    principal: Principal,
    body: Any,
    effective_at: datetime | None,
    *,
    source: str = "api",
) -> CommandContext:
    now = ledger_now(request)
    if effective_at is not None:
        effective_at = check_business_time(effective_at, now)
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= 255:
        raise ApiProblem(
            400, "Bad request", "Idempotency-Key is 1 to 255 characters", code="bad_idempotency_key"
        )
    correlation = request.headers.get("x-correlation-id")
    try:
        correlation_id = UUID(correlation) if correlation else ids.correlation_id()
    except ValueError:
        correlation_id = ids.correlation_id()
    return CommandContext(
        occurred_at=effective_at or now,
        source=source,
        actor=principal.key_id,
        correlation_id=correlation_id,
        reason=request.headers.get("x-reason"),
        idempotency_key=key,
        request_hash=request_fingerprint(request, body) if key else None,
    )


def written(container: Container, outcome: Outcome) -> dict[str, Any]:
    """A write's answer: the receipt and the position to pass as `min_position`."""
    container.wake_projection()
    return {**outcome.receipt, "position": outcome.position}


KnownAtQuery = Annotated[
    datetime | None,
    Query(description="answer as the ledger knew it then: only events recorded at or before (audit role)"),
]
MinPositionQuery = Annotated[int | None, Query(ge=0, description="wait until this position is visible")]


def _audited_moment(principal: Principal, known_at: datetime) -> datetime:
    if not principal.may("audit"):
        raise ApiProblem(
            403,
            "Forbidden",
            f"a {principal.role} key may not ask for known_at (audit needed)",
            code="forbidden",
        )
    return known_at if known_at.tzinfo is not None else known_at.replace(tzinfo=UTC)


def known_at_connection(
    container: ContainerDep,
    principal: Annotated[Principal, Depends(require("read"))],
    known_at: KnownAtQuery = None,
    min_position: MinPositionQuery = None,
) -> Iterator[Connection[Any]]:
    """ReadConn, or with `known_at` a connection reading the read models' versions current at
    the last position recorded by then (projections/known_at.py): what a replay of the events
    recorded by then would answer, without the replay. Where that cannot be proved (versions
    incomplete, recorded_at not monotonic), the replay snapshot answers."""
    if known_at is None:
        yield from _live(container, min_position)
        return
    moment = _audited_moment(principal, known_at)
    schema = container.settings.database_schema
    with container.pool.connection() as conn:
        position = known.position_at(conn, schema, moment)
        ready = position is not None and known.versions_complete(conn)
        if ready:
            known.ensure_views(conn, schema)
    if position is None or not ready:
        yield from _replayed(container, schema, moment)
        return
    # The versions up to that position must have been written: wait as read-your-writes does.
    wait_for_read_models(container, position)
    with container.pool.connection() as conn, known.reading_known(conn, schema, position):
        yield conn


def _live(container: Container, min_position: int | None) -> Iterator[Connection[Any]]:
    wait_for_read_models(container, min_position)
    with container.pool.connection() as conn:
        yield conn


def _replayed(container: Container, schema: str, moment: datetime) -> Iterator[Connection[Any]]:
    snapshot = known_at_snapshot(container.address.conninfo(), schema, moment)
    with container.pool.connection() as conn, reading_snapshot(conn, snapshot, schema):
        yield conn


def known_at_replay_connection(
    container: ContainerDep,
    principal: Annotated[Principal, Depends(require("read"))],
    known_at: KnownAtQuery = None,
    min_position: MinPositionQuery = None,
) -> Iterator[Connection[Any]]:
    """Like KnownAtConn, for reads of tables that keep no versions (the quotas list): with
    `known_at`, a snapshot of the read models rebuilt from the events recorded by then."""
    if known_at is None:
        yield from _live(container, min_position)
        return
    moment = _audited_moment(principal, known_at)
    yield from _replayed(container, container.settings.database_schema, moment)


KnownAtConn = Annotated[Connection[Any], Depends(known_at_connection)]
KnownAtReplayConn = Annotated[Connection[Any], Depends(known_at_replay_connection)]
