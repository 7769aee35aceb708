"""POST /v1/events: CloudEvents from SaaS systems and on-premise instances (ingest keys).

Thin: read the body within its limits, let `ingest.cloudevents` read the events and translate
them into commands, run the ingest use case, answer one result per event. Measurements (single
events and batches alike) go to the group committer, which appends those of concurrent requests
in one transaction; the request waits for that commit without holding a thread. Other events
(customers, corrections) run in a worker thread. Nothing is answered before its commit."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Depends, Header, Request, Response
from starlette.concurrency import run_in_threadpool

from api.deps import permitted, principal_of
from api.errors import ApiProblem, problem
from api.openapi import BEARER
from api.routing import LedgerRoute
from api.schemas.ingest import CLOUDEVENTS_REQUEST, IngestAnswer
from application.ingestion import REJECTED, EventResult, IngestContext
from domain import ids
from infra.bootstrap import Container
from infra.group_commit import Overloaded
from infra.keys import Principal
from ingest import cloudevents as ce

router = APIRouter(route_class=LedgerRoute, prefix="/v1/events", tags=["ingest"])


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiProblem(400, "Bad request", "Content-Length is not a number", code="bad_request")
        if int(declared) > limit:
            raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> ApiProblem:
    return ApiProblem(413, "Payload too large", f"the body exceeds {limit} bytes", code="payload_too_large")


async def _container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


async def ingest_key(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
    """`require("ingest")`, run on the event loop: a known key is a cache hit, so the hot path
    of ingest never waits for a worker thread."""
    return permitted(principal_of(await _container(request), authorization), "ingest")


IngestKey = Annotated[Principal, Depends(ingest_key)]
IngestContainer = Annotated[Container, Depends(_container)]


@router.post(
    "",
    status_code=202,
    response_model=IngestAnswer,
    # The key is read in the endpoint (see there); the document declares it all the same.
    openapi_extra={**CLOUDEVENTS_REQUEST, "security": [{BEARER: []}]},
    responses={
        207: {"model": IngestAnswer, "description": "a batch in which some events were rejected"},
        400: {"description": "malformed JSON, not CloudEvents, or a binary-mode event without ce-id"},
        403: {"description": "a scoped key sent another customer's event"},
        409: {"description": "a single event whose id was used with another content"},
        413: {"description": "over 1,000 events or 5 MB"},
        415: {"description": "not a CloudEvents content mode"},
        422: {
            "description": "a single event that was rejected (a time outside the window is time_out_of_range)"
        },
        503: {"description": "too many events waiting for a commit; retry"},
    },
)
async def ingest_events(request: Request) -> Response:
    """Record CloudEvents exactly once per (source, id). A batch (`application/cloudevents-batch+json`
    or a JSON array) answers 202, or 207 when some events were rejected, with one result per
    event; a single event (structured or binary mode) answers 202, or a problem when rejected."""
    # The container and the key are found here rather than by FastAPI's dependencies, whose
    # resolution cost a third of the CPU of a single-event request.
    container: Container = request.app.state.container
    principal = permitted(principal_of(container, request.headers.get("authorization")), "ingest")
    settings = container.settings
    ingestion, committer = container.ingestion, container.ingest_committer
    if ingestion is None or committer is None:
        raise RuntimeError("the container was built without ingestion")
    body = await read_body(request, settings.ingest_max_body_bytes)
    try:
        reads, batch = ce.read_request(request.headers.get("content-type"), request.headers, body)
    except ce.UnsupportedMediaType as unsupported:
        raise ApiProblem(
            415, "Unsupported media type", str(unsupported), code="unsupported_media_type"
        ) from None
    except ce.UnreadableRequest as unreadable:
        errors = [{"field": unreadable.field, "message": str(unreadable)}] if unreadable.field else None
        raise ApiProblem(
            400, "Malformed request", str(unreadable), code=unreadable.code, errors=errors
        ) from None
    if len(reads) > settings.ingest_max_batch_events:
        raise ApiProblem(
            413,
            "Payload too large",
            f"a batch holds at most {settings.ingest_max_batch_events} events, not {len(reads)}",
            code="payload_too_large",
        )
    try:
        translated = [
            ce.to_command(read, principal.customer_id) if isinstance(read, ce.ReadEvent) else read
            for read in reads
        ]
    except ce.OutOfScope as outside:
        raise ApiProblem(403, "Forbidden", str(outside), code="forbidden") from None
    commands = [c for c in translated if not isinstance(c, ce.Rejection)]
    results = [
        EventResult(r.index, r.id or "", REJECTED, None, r.code, r.reason, r.field)
        for r in translated
        if isinstance(r, ce.Rejection)
    ]
    if commands:
        ctx = IngestContext(
            actor=principal.key_id, correlation_id=_uuid(request.headers.get("x-correlation-id"))
        )
        try:
            # Measurements only: hand them to the group committer and wait for the commit
            # without holding a thread; otherwise (customer events, corrections) in a thread.
            pending = ingestion.submit_usage(commands, ctx, committer.submit)
            if pending is not None:
                appended: list[EventResult] = await asyncio.wrap_future(pending)  # type: ignore[arg-type]
                results.extend(appended)
            else:
                results.extend(await run_in_threadpool(ingestion.ingest, commands, ctx, append=committer.run))
        except Overloaded:
            raise ApiProblem(
                503,
                "Overloaded",
                "too many events are waiting; retry",
                code="overloaded",
                headers={"Retry-After": "1"},
            ) from None
        container.wake_projection()
    results.sort(key=lambda r: r.index)
    return _answer(results, batch, reads)


def _uuid(value: str | None) -> UUID:
    try:
        return UUID(value) if value else ids.correlation_id()
    except ValueError:
        return ids.correlation_id()


def _answer(results: list[EventResult], batch: bool, reads: list[ce.Read]) -> Response:
    rejected = [r for r in results if r.status == REJECTED]
    if not batch and rejected:
        only = rejected[0]
        status = 409 if only.code == "conflict" else 403 if only.code == "forbidden" else 422
        return problem(
            status,
            "Event rejected",
            only.reason or "the event was rejected",
            only.code or "rejected",
            errors=[{"field": only.field or only.code or "event", "message": only.reason or ""}],
        )
    items: list[dict[str, Any]] = []
    for result, read in zip(results, reads, strict=True):
        if result.status == REJECTED:
            items.append(
                {
                    "id": result.id or read.id or None,
                    "status": REJECTED,
                    "code": result.code,
                    "reason": result.reason,
                }
            )
        else:
            items.append({"id": result.id or read.id or None, "status": result.status})
    position = max((r.position for r in results if r.position is not None), default=0)
    body = orjson.dumps({"results": items, "position": position})
    return Response(body, status_code=207 if rejected else 202, media_type="application/json")
