from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, Field

from api.deps import ContainerDep, ReadConn
from api.routing import LedgerRoute
from infra import kafka
from infra.bootstrap import Container
from projections.ops import projection_status

router = APIRouter(route_class=LedgerRoute, tags=["operations"])


class PartitionStatus(BaseModel):
    partition: int
    position: int
    watermark: int
    updated_at: datetime


class ProjectorFailure(BaseModel):
    """The event a projector stopped at because it cannot apply it."""

    partition: int = Field(description="-1 for a projector fed from the event store")
    position: int
    event_type: str
    error: str
    since: datetime
    attempts: int = Field(description="how many times it tried that event so far")


class ProjectorStatus(BaseModel):
    name: str
    position: int
    lag_events: int
    lag_seconds: float
    status: Literal["running", "stopped"]
    failure: ProjectorFailure | None = Field(description="where it stopped (the lowest position)")
    partitions: list[PartitionStatus]


class RelayStatus(BaseModel):
    topic: str
    position: int
    lag_events: int
    lag_seconds: float
    partitions: int


class KafkaStatus(BaseModel):
    bootstrap_servers: str = Field(description="where any Kafka client reads the log")
    topic: str = Field(description="the stored events and nothing else, from position 1")
    watermark_topic: str = Field(description="the ledger's own read-your-writes watermarks")


class ProjectionsStatus(BaseModel):
    head: int
    kafka: KafkaStatus | None = Field(description="null when the projector reads the store directly")
    projectors: list[ProjectorStatus]
    relays: list[RelayStatus]


@router.get("/v1/ops/projections", response_model=ProjectionsStatus)
def projections(conn: ReadConn, container: ContainerDep) -> dict[str, Any]:
    """Per projector: the position every read model has applied, the lag behind the log, and
    the event it stopped at if it met one it cannot apply; where the Kafka broker is."""
    return {**projection_status(conn), "kafka": kafka_status(container)}


def kafka_status(container: Container) -> dict[str, str] | None:
    if not container.kafka_bootstrap_servers:
        return None
    topic = kafka.topic_name(container.settings.kafka_topic_prefix)
    return {
        "bootstrap_servers": container.kafka_bootstrap_servers,
        "topic": topic,
        "watermark_topic": kafka.watermark_topic_for(topic),
    }


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
        stopped = GaugeMetricFamily(
            "ledger_projection_stopped",
            "1 while the projector is stopped at an event it cannot apply",
            labels=["projector"],
        )
        for p in status["projectors"]:
            stopped.add_metric([p["name"]], 1 if p["failure"] else 0)
        relay = GaugeMetricFamily(
            "ledger_relay_lag_events", "events not published to Kafka yet", labels=["topic"]
        )
        for r in status["relays"]:
            relay.add_metric([r["topic"]], r["lag_events"])
        yield from (position, lag, lag_s, stopped, relay)


@router.get("/metrics", include_in_schema=False)
def metrics(container: ContainerDep) -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector(container))
    return Response(generate_latest(registry), media_type="text/plain; version=0.0.4; charset=utf-8")
