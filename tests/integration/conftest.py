"""Fixtures shared by the integration tests of more than one module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from infra.bootstrap import Container, bootstrap
from infra.settings import Settings
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
