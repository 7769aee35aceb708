"""The API as a uvicorn app factory, for `ledger api --workers N`: each worker process builds its
own container from the environment (LEDGER_*), in the lifespan, not at import."""

from __future__ import annotations

from fastapi import FastAPI

from api.app import create_app
from infra import heap
from infra.bootstrap import Container, bootstrap
from infra.settings import Settings


def app_from_environment() -> FastAPI:
    settings = Settings()
    url = settings.database_url
    if not url:
        raise RuntimeError("LEDGER_DATABASE_URL is required to run the API on its own")
    # With Kafka, projectors run as their own processes (`ledger project`); without, each API
    # process keeps the read models current from the store itself.
    in_process = settings.kafka_bootstrap_servers is None

    def build() -> Container:
        container = bootstrap(settings, url, run_projection=in_process)
        heap.settle()
        return container

    return create_app(build)


def ledger_up_worker() -> FastAPI:
    """An API process of `ledger up`: the relay, projectors and policies run in `ledger up`'s own
    process, which hears of this one's writes through PostgreSQL notifications."""
    settings = Settings()
    url = settings.database_url
    if not url:
        raise RuntimeError("`ledger up` sets LEDGER_DATABASE_URL for its API processes")
    servers = settings.kafka_bootstrap_servers

    def build() -> Container:
        container = bootstrap(
            settings, url, run_projection=False, kafka_bootstrap_servers=servers, notify_writes=True
        )
        heap.settle()
        return container

    return create_app(build)
