"""Fixtures shared by the integration tests of more than one module."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from infra.bootstrap import Container, bootstrap
from infra.settings import Settings
from tests.integration.smtp_server import smtp_server  # noqa: F401 - a real SMTP server's fixture
from tests.integration.stripe_helpers import SECRET
from tests.integration.webhook_helpers import hooks, receiver  # noqa: F401 - the webhook tests' fixtures


@pytest.fixture
def stripe_container(settings: Settings, database_url: str) -> Iterator[Container]:
    """A ledger that takes Stripe webhooks signed with `SECRET` (no projector: the tests read
    the aggregates, the write side of each delivery)."""
    built = bootstrap(
        settings.model_copy(update={"stripe_webhook_secret": SecretStr(SECRET)}),
        database_url,
        run_projection=False,
    )
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def stripe(stripe_container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(lambda: stripe_container), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def stripe_live_container(settings: Settings, database_url: str) -> Iterator[Container]:
    """As `stripe_container`, with the projector running: for what the read models answer."""
    built = bootstrap(
        settings.model_copy(update={"stripe_webhook_secret": SecretStr(SECRET)}),
        database_url,
        run_projection=True,
    )
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def stripe_live(stripe_live_container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(lambda: stripe_live_container), raise_server_exceptions=False) as test_client:
        yield test_client


class Clocked:
    """A ledger with the test clock allowed, its API and an admin key: the tools of a test that
    moves business time forward as a user of the test clock would."""

    def __init__(self, client: TestClient, container: Container, admin: dict[str, str]) -> None:
        self.client, self.container, self.admin, self.position = client, container, admin, 0

    def post(
        self, path: str, body: dict[str, object] | None = None, status: int | None = None
    ) -> dict[str, Any]:
        response = self.client.post(path, json=body or {}, headers=self.admin)
        expected = (status,) if status else (200, 201)
        assert response.status_code in expected, (path, body, response.text)
        answer: dict[str, Any] = response.json()
        self.position = max(self.position, int(answer.get("position", 0)))
        return answer

    def get(self, path: str, **params: object) -> Any:
        response = self.client.get(path, params={"min_position": self.position, **params}, headers=self.admin)
        assert response.status_code == 200, (path, response.text)
        return response.json()

    def advance(self, to: datetime) -> None:
        self.post("/v1/ops/clock", {"advance_to": to.isoformat().replace("+00:00", "Z")})

    @property
    def now(self) -> datetime:
        return self.container.ledger.now()


@pytest.fixture
def clocked(settings: Settings, database_url: str) -> Iterator[Clocked]:
    allowed = settings.model_copy(update={"allow_test_clock": True})
    container = bootstrap(allowed, database_url, run_projection=True)
    try:
        with TestClient(create_app(lambda: container), raise_server_exceptions=False) as client:
            _, raw = container.keys.mint(role="admin", name="tests")
            yield Clocked(client, container, {"Authorization": f"Bearer {raw}"})
    finally:
        container.close()
