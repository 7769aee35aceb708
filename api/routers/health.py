from __future__ import annotations

from typing import Any

import psycopg
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from kafka.errors import KafkaError

from api.deps import ContainerDep
from projections.ops import projection_status

router = APIRouter(tags=["operations"])

MAX_READY_LAG_EVENTS = 50_000
MAX_READY_LAG_SECONDS = 60.0


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
    """Readiness: the store answers, the broker answers (when used), projectors keep up."""
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
        checks[f"projector:{projector['name']}"] = {
            "lag_events": projector["lag_events"],
            "lag_seconds": round(projector["lag_seconds"], 3),
            "status": "behind" if behind else "ok",
        }
        ready = ready and not behind
    if container.kafka_bootstrap_servers:
        try:
            checks["broker"] = "ok" if container.broker_reachable() else "unavailable"
        except KafkaError as error:
            checks["broker"] = f"unavailable: {type(error).__name__}"
        ready = ready and checks["broker"] == "ok"
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks}, status_code=200 if ready else 503
    )
