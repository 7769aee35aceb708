from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel

from api.deps import ContainerDep, ReadConn
from infra.bootstrap import Container
from projections.ops import projection_status

router = APIRouter(tags=["operations"])


class PartitionStatus(BaseModel):
    partition: int
    position: int
    watermark: int
    updated_at: datetime


class ProjectorStatus(BaseModel):
    name: str
    position: int
    lag_events: int
    lag_seconds: float
    partitions: list[PartitionStatus]


class RelayStatus(BaseModel):
    topic: str
    position: int
    lag_events: int
    lag_seconds: float
    partitions: int


class ProjectionsStatus(BaseModel):
    head: int
    projectors: list[ProjectorStatus]
    relays: list[RelayStatus]


@router.get("/v1/ops/projections", response_model=ProjectionsStatus)
def projections(conn: ReadConn) -> dict[str, Any]:
    """Per projector: the position every read model has applied, and the lag behind the log."""
    return projection_status(conn)


class LedgerCollector(Collector):
    """Reads the positions at scrape time, so every API process reports the same truth."""

    def __init__(self, container: Container) -> None:
        self.container = container

    def collect(self) -> Any:
        with self.container.pool.connection() as conn:
            status = projection_status(conn)
        yield GaugeMetricFamily(
            "ledger_event_store_head_position", "position of the last stored event", value=status["head"]
        )
        position = GaugeMetricFamily(
            "ledger_projection_position", "position applied by every read model", labels=["projector"]
        )
        lag = GaugeMetricFamily(
            "ledger_projection_lag_events", "events not applied yet", labels=["projector"]
        )
        lag_s = GaugeMetricFamily(
            "ledger_projection_lag_seconds", "age of the oldest event not applied", labels=["projector"]
        )
        for p in status["projectors"]:
            position.add_metric([p["name"]], p["position"])
            lag.add_metric([p["name"]], p["lag_events"])
            lag_s.add_metric([p["name"]], p["lag_seconds"])
        relay = GaugeMetricFamily(
            "ledger_relay_lag_events", "events not published to Kafka yet", labels=["topic"]
        )
        for r in status["relays"]:
            relay.add_metric([r["topic"]], r["lag_events"])
        yield from (position, lag, lag_s, relay)


@router.get("/metrics", include_in_schema=False)
def metrics(container: ContainerDep) -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector(container))
    return Response(generate_latest(registry), media_type="text/plain; version=0.0.4; charset=utf-8")
