"""What the webhook tests share: a wall clock they move forward, and a ledger whose fan-out and
dispatcher they run step by step (no background thread, no sleep: the schedule follows the
clock they hold)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from application.webhook_dispatch import WebhookDispatcher
from infra.bootstrap import Container, bootstrap
from infra.settings import Settings
from projections.webhook_fanout import WebhookFanout
from tests.conftest import bearer
from tests.integration.webhook_receiver import Receiver


class MovableClock:
    """The wall clock as the delivery scheduler sees it: real now at first, then moved forward
    by the test (never back)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@dataclass
class Hooks:
    container: Container
    client: TestClient
    admin: dict[str, str]
    clock: MovableClock
    fanout: WebhookFanout
    dispatcher: WebhookDispatcher

    def create_endpoint(self, url: str, event_types: list[str] | None = None, **extra: Any) -> dict[str, Any]:
        answer = self.client.post(
            "/v1/webhook-endpoints",
            json={"url": url, "event_types": event_types or ["*"], **extra},
            headers=self.admin,
        )
        assert answer.status_code == 201, answer.text
        created: dict[str, Any] = answer.json()
        return created

    def restart(self, **overrides: Any) -> None:
        """A new fan-out and dispatcher (as a restarted process has), on the same clock."""
        self.fanout = WebhookFanout(self.container.pool, self.container.ledger, clock=self.clock)
        self.dispatcher = dispatcher_for(self.container, self.clock, **overrides)

    def deliver(self) -> int:
        """Fan out what the log holds, then attempt everything due now, until nothing is."""
        self.fanout.catch_up()
        attempted = 0
        while made := self.dispatcher.deliver_due():
            attempted += made
        return attempted

    def deliveries(self, endpoint_id: str, **params: Any) -> list[dict[str, Any]]:
        answer = self.client.get(
            f"/v1/webhook-endpoints/{endpoint_id}/deliveries", params=params, headers=self.admin
        )
        assert answer.status_code == 200, answer.text
        rows: list[dict[str, Any]] = answer.json()["data"]
        return rows

    def next_attempt_at(self) -> datetime | None:
        with self.container.pool.connection() as conn:
            row: Any = conn.execute(
                "SELECT min(next_attempt_at) AS due FROM webhook_deliveries WHERE status = 'pending'"
            ).fetchone()
        due: datetime | None = row["due"]
        return due

    def run_schedule_until(self, moment: datetime) -> None:
        """Attempt every delivery at each moment it falls due, up to `moment`."""
        self.deliver()
        while (due := self.next_attempt_at()) is not None and due <= moment:
            self.clock.now = max(self.clock.now, due)
            self.deliver()
        self.clock.now = max(self.clock.now, moment)


def dispatcher_for(container: Container, clock: MovableClock, **overrides: Any) -> WebhookDispatcher:
    endpoints = container.webhooks
    assert endpoints is not None
    options: dict[str, Any] = {
        "allow_private": True,
        "timeout_seconds": 10.0,
        "concurrency": 8,
        "clock": clock,
        **overrides,
    }
    return WebhookDispatcher(container.pool, endpoints.vault, endpoints, **options)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver().start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def hooks(settings: Settings, database_url: str) -> Iterator[Hooks]:
    built = bootstrap(
        settings.model_copy(update={"webhooks_allow_private": True, "read_wait_timeout_seconds": 0.5}),
        database_url,
        run_projection=True,
    )
    clock = MovableClock()
    assert built.webhooks is not None
    built.webhooks.clock = clock
    try:
        with TestClient(create_app(lambda: built), raise_server_exceptions=False) as client:
            _, raw = built.keys.mint(role="admin", name="tests")
            yield Hooks(
                built,
                client,
                bearer(raw),
                clock,
                WebhookFanout(built.pool, built.ledger, clock=clock),
                dispatcher_for(built, clock),
            )
    finally:
        built.close()
