"""Shared fixtures. Integration and end-to-end tests use a real PostgreSQL: the server named by
LEDGER_DATABASE_URL, else the one on 127.0.0.1:5432, else embedded PostgreSQL. Each test gets
its own schema, so tests never see each other's events."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql

from api.app import create_app
from infra.bootstrap import Container, bootstrap
from infra.settings import DatabaseAddress, Settings

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(DatabaseAddress(url).conninfo(), connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server URL (its maintenance database)."""
    configured = os.environ.get("LEDGER_DATABASE_URL")
    if configured:
        yield configured
        return
    if _answers(LOCAL_POSTGRES):
        yield LOCAL_POSTGRES
        return
    from infra.embedded import EmbeddedPostgres

    embedded = EmbeddedPostgres(tmp_path_factory.mktemp("embedded-pg"))
    try:
        yield embedded.start()
    finally:
        embedded.stop()


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """A database created for this test session and dropped after it."""
    address = DatabaseAddress(server_url)
    name = f"ledger_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(address.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = _with_dbname(server_url, name)
    yield url
    with psycopg.connect(address.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _with_dbname(url: str, dbname: str) -> str:
    from urllib.parse import urlparse, urlunparse

    parsed = urlparse(url)
    return urlunparse(parsed._replace(path=f"/{dbname}"))


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        database_schema=f"t_{uuid.uuid4().hex[:12]}",
        data_dir=tmp_path / "data",
        database_pool_size=4,
        projection_poll_seconds=0.02,
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def container(settings: Settings, database_url: str) -> Iterator[Container]:
    built = bootstrap(settings, database_url, run_projection=True)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def client(container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(lambda: container), raise_server_exceptions=False) as test_client:
        yield test_client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def admin(container: Container) -> dict[str, str]:
    _, raw = container.keys.mint(role="admin", name="tests")
    return bearer(raw)


@pytest.fixture
def reader(container: Container) -> dict[str, str]:
    _, raw = container.keys.mint(role="read", name="tests")
    return bearer(raw)


def count_events(container: Container) -> int:
    with container.pool.connection() as conn:
        row: Any = conn.execute("SELECT count(*) AS n FROM ledger_events").fetchone()
        return int(row["n"])


@pytest.fixture(scope="session")
def kafka_servers() -> Iterator[str]:
    """A Kafka-protocol broker: LEDGER_KAFKA_BOOTSTRAP_SERVERS, else the embedded one (Tansu)."""
    configured = os.environ.get("LEDGER_KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    from infra.embedded import EmbeddedKafka

    broker = EmbeddedKafka()
    try:
        yield broker.start()
    finally:
        broker.stop()


def read_model_rows(container: Container, tables: tuple[str, ...] | None = None) -> dict[str, list[Any]]:
    """Every row of the read models, in a stable order, for replay-equals-live comparisons."""
    from projections.registry import tables_of

    found: dict[str, list[Any]] = {}
    with container.pool.connection() as conn:
        for table in tables or tables_of("core"):
            rows = conn.execute(f"SELECT * FROM {table} t ORDER BY t::text").fetchall()
            found[table] = [dict(r) for r in rows]  # type: ignore[call-overload]
    return found
