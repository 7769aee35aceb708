from __future__ import annotations

from typing import Any

import psycopg
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from kafka.errors import KafkaError

from api.deps import ContainerDep
from api.routing import LedgerRoute
from projections.ops import projection_status

router = APIRouter(route_class=LedgerRoute, tags=["operations"])

MAX_READY_LAG_EVENTS = 50_000
MAX_READY_LAG_SECONDS = 60.0
MAX_READY_FAILURES_IN_A_ROW = 3  # of this process's own relay or projector loop


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


READINESS = {
    "type": "object",
    "required": ["status", "checks"],
    "properties": {
        "status": {"type": "string", "enum": ["ready", "unavailable"]},
        "checks": {"type": "object"},
    },
}


@router.get(
    "/readyz",
    responses={
        200: {"description": "ready", "content": {"application/json": {"schema": READINESS}}},
        503: {"description": "not ready", "content": {"application/json": {"schema": READINESS}}},
    },
)
def readyz(container: ContainerDep) -> JSONResponse:
    """Readiness: the store answers, the broker answers (when used), projectors keep up, and
    none is stopped at an event it cannot apply (then named, with the position and the error)."""
    checks: dict[str, Any] = {}
    ready = True
    try:
        with container.pool.connection() as conn:
            status = projection_status(conn)
        checks["store"] = "ok"
    except psycopg.Error as error:
        checks["store"] = f"unavailable: {type(error).__name__}"
        return JSONResponse({"status": "unavailable", "checks": checks}, status_code=503)
    for projector in status["projectors"]:
        behind = (
            projector["lag_events"] > MAX_READY_LAG_EVENTS or projector["lag_seconds"] > MAX_READY_LAG_SECONDS
        )
        check: dict[str, Any] = {
            "lag_events": projector["lag_events"],
            "lag_seconds": round(projector["lag_seconds"], 3),
            "status": "behind" if behind else "ok",
        }
        failure = projector["failure"]
        if failure is not None:
            check.update(
                status="stopped",
                partition=failure["partition"],
                position=failure["position"],
                event_type=failure["event_type"],
                error=failure["error"],
            )
        checks[f"projector:{projector['name']}"] = check
        ready = ready and check["status"] == "ok"
    for loop in (container.projection, container.relay):
        if loop is not None and loop.failures >= MAX_READY_FAILURES_IN_A_ROW:
            checks[loop.name] = {"status": "failing", "failures": loop.failures, "error": loop.last_error}
            ready = False
    if container.kafka_bootstrap_servers:
        try:
            checks["broker"] = "ok" if container.broker_reachable() else "unavailable"
        except KafkaError as error:
            checks["broker"] = f"unavailable: {type(error).__name__}"
        ready = ready and checks["broker"] == "ok"
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks}, status_code=200 if ready else 503
    )
