"""The FastAPI application factory. The container (connections, event store, projector) is
built in the lifespan, never at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.body_limit import BodyLimitMiddleware
from api.docs import install_docs
from api.errors import install_error_handlers
from api.ingest_lane import IngestLane
from api.openapi import install_openapi
from api.routers import (
    alerts,
    analytics,
    api_keys,
    audit,
    clock,
    coupons,
    credit_notes,
    customers,
    dashboard,
    documents,
    emails,
    events,
    health,
    invoices,
    ledger,
    meter_events,
    metrics,
    onboarding,
    ops,
    payments,
    plans,
    receivables,
    simulation,
    subscriptions,
    usage,
    webhook_endpoints,
    webhooks,
)
from infra.bootstrap import Container


def create_app(make_container: Callable[[], Container]) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        container = make_container()
        app.state.container = container
        try:
            yield
        finally:
            engine = getattr(app.state, "analytics_engine", None)
            if engine is not None:
                engine.close()  # and its spill directory with it
            container.close()

    app = FastAPI(
        title="Billing ledger",
        version="0.1.0",
        description="Event-sourced billing ledger: commands, queries and audits over an immutable log.",
        lifespan=lifespan,
        docs_url=None,  # served by api/docs.py from the installed Swagger UI wheel, not a CDN
        redoc_url=None,
    )
    install_error_handlers(app)
    install_docs(app)
    install_openapi(app)
    app.add_middleware(IngestLane)  # added first: it runs inside the body limit
    app.add_middleware(BodyLimitMiddleware)
    for router in (
        events.router,
        health.router,
        api_keys.router,
        plans.router,
        customers.router,
        subscriptions.router,
        invoices.router,
        coupons.router,
        credit_notes.router,
        documents.router,
        payments.router,
        emails.router,
        alerts.router,
        metrics.router,
        receivables.router,
        usage.router,
        meter_events.router,
        onboarding.router,
        webhooks.router,
        webhook_endpoints.router,
        ops.router,
        clock.router,
        analytics.router,
        audit.router,
        ledger.router,
        simulation.router,
    ):
        app.include_router(router)
    dashboard.mount_dashboard(app)
    return app
