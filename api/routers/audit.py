"""Audit: any stream's whole history, the global log by position, and the integrity proof."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query

from api.deps import AuditKey, ContainerDep
from api.routing import LedgerRoute
from api.schemas.audit import LogPage, StreamHistory, VerificationOut
from domain.errors import NotFound
from infra import event_log
from infra.seals import seal, verify

router = APIRouter(route_class=LedgerRoute, prefix="/v1/audit", tags=["audit"])
Limit = Annotated[int, Query(ge=1, le=1000)]


@router.get("/streams/{stream_id}", response_model=StreamHistory)
def stream_history(
    stream_id: UUID,
    container: ContainerDep,
    _: AuditKey,
    after_version: Annotated[int, Query(ge=0)] = 0,
    limit: Limit = 1000,
) -> dict[str, Any]:
    """Every event of one aggregate in version order, with who caused it, why and when."""
    with container.pool.connection() as conn:
        events = event_log.stream_history(conn, stream_id, after_version=after_version, limit=limit)
    if not events and after_version == 0:
        raise NotFound(f"no stream with id {stream_id}")
    more = len(events) > limit
    events = events[:limit]
    return {
        "stream_id": stream_id,
        "events": events,
        "next_after_version": events[-1]["version"] if more else None,
    }


@router.get("/log", response_model=LogPage)
def log(
    container: ContainerDep,
    _: AuditKey,
    after: Annotated[int, Query(ge=0, description="the last position already read")] = 0,
    limit: Limit = 100,
) -> dict[str, Any]:
    """The global log in position order."""
    with container.pool.connection() as conn:
        events = event_log.log_after(conn, after=after, limit=limit)
    more = len(events) > limit
    events = events[:limit]
    return {"events": events, "next_after": events[-1]["position"] if more else None}


@router.get("/verify", response_model=VerificationOut)
def verify_log(container: ContainerDep, _: AuditKey) -> dict[str, Any]:
    """Seal new history, then recompute the hash chain over every stored event and compare it
    with the seals: `ok`, or the first position where an event was altered, removed or inserted."""
    seal(container.pool)
    return asdict(verify(container.pool))
