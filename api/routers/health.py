from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ContainerDep
from infra.bootstrap import CORE_PROJECTION
from projections.checkpoints import applied_position
from projections.runner import head_position

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(container: ContainerDep) -> JSONResponse:
    checks: dict[str, Any] = {}
    try:
        head = head_position(container.pool)
        applied = applied_position(container.pool, CORE_PROJECTION)
        checks["store"] = "ok"
        checks["projection_lag_events"] = head - applied
    except Exception as error:  # noqa: BLE001 - readiness reports the failure instead of raising
        checks["store"] = f"unavailable: {type(error).__name__}"
        return JSONResponse({"status": "unavailable", "checks": checks}, status_code=503)
    return JSONResponse({"status": "ready", "checks": checks})
