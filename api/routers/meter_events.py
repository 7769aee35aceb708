"""POST /v1/meter-events (SPEC section 10, seed 003): an instance reports its usage with the key
scoped to its customer. Thin: the report becomes an ingest command (`application.meter_reports`)
and takes the ingest path (group commit, limits, business time, exactly once)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, status

from api.errors import ApiProblem
from api.routers.events import IngestContainer, IngestKey
from api.routing import LedgerRoute
from api.schemas.integrations import MeterEventOut, MeterEventRequest
from application.ingestion import REJECTED, EventResult, IngestContext
from application.meter_reports import ACTIVE_USERS, MeterReport, record_command
from domain.errors import InvalidValue
from infra.group_commit import Overloaded
from infra.keys import Principal

router = APIRouter(route_class=LedgerRoute, prefix="/v1/meter-events", tags=["integrations"])


def _report(body: MeterEventRequest, principal: Principal) -> MeterReport:
    customer_id = principal.customer_id or body.customer_id
    if principal.customer_id is not None and body.customer_id not in (None, principal.customer_id):
        raise ApiProblem(
            403,
            "Forbidden",
            f"this key reports only for customer {principal.customer_id}",
            code="forbidden",
        )
    if customer_id is None:
        raise InvalidValue("name the customer, or use a key scoped to it", field="customer_id")
    if body.user_count is not None:
        if body.value is not None or body.metric not in (None, ACTIVE_USERS):
            raise InvalidValue(
                f"user_count is the metric {ACTIVE_USERS}: send it, or metric and value", field="user_count"
            )
        return MeterReport(customer_id, ACTIVE_USERS, body.user_count, body.timestamp, body.properties)
    if body.metric is None:
        raise InvalidValue("send user_count, or metric and value", field="metric")
    if body.value is None:
        raise InvalidValue("value is required with metric", field="value")
    return MeterReport(customer_id, body.metric, body.value, body.timestamp, body.properties)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=MeterEventOut,
    responses={
        403: {"description": "the key is scoped to another customer, or may not ingest"},
        409: {
            "description": "a report with this customer, metric and timestamp was recorded with another value"
        },
        422: {"description": "no timestamp, a negative count, a timestamp out of range, an unknown customer"},
        503: {"description": "too many events are waiting for a commit; retry"},
    },
)
async def report_usage(
    body: MeterEventRequest, request: Request, container: IngestContainer, principal: IngestKey
) -> dict[str, Any]:
    """Record a usage report: `user_count` (the metric `active_users`), or `metric` and `value`,
    measured at `timestamp`. Idempotent on (customer, metric, timestamp): the same report again
    answers the same and records nothing; another value under that key is 409."""
    ingestion, committer = container.ingestion, container.ingest_committer
    if ingestion is None or committer is None:
        raise RuntimeError("the container was built without ingestion")
    report = _report(body, principal)
    command = record_command(report, container.ledger.now())
    ctx = IngestContext(actor=principal.key_id, correlation_id=None)
    try:
        pending = ingestion.submit_usage([command], ctx, committer.submit)
        if pending is None:  # a measurement always takes the group commit
            raise RuntimeError("a meter report is a measurement")
        results: list[EventResult] = await asyncio.wrap_future(pending)  # type: ignore[arg-type]
    except Overloaded:
        raise ApiProblem(
            503,
            "Overloaded",
            "too many events are waiting; retry",
            code="overloaded",
            headers={"Retry-After": "1"},
        ) from None
    result, measured_at = results[0], report.timestamp
    if result.status == REJECTED:
        conflict = result.code == "conflict"
        detail = (
            f"a {command.metric} report at {measured_at.isoformat()} was recorded with another value"
            if conflict
            else result.reason or "the report was rejected"
        )
        field = "value" if conflict else (result.field or result.code or "body")
        raise ApiProblem(
            409 if conflict else 422,
            "Conflict" if conflict else "Report rejected",
            detail,
            code=result.code or "rejected",
            errors=[{"field": field, "message": detail}],
        )
    container.wake_projection()
    return {
        "id": command.key.stream_id,
        "customer_id": command.customer_id,
        "metric": command.metric,
        "value": command.value,
        "timestamp": command.occurred_at or measured_at,
        "properties": command.properties,
        "position": result.position,
    }
