"""POST /v1/webhooks/stripe: Stripe events, verified with the endpoint secret, recorded once.

Thin: read the body within its limit, verify the signature with the `stripe` library, and run
the Stripe use case. A bad signature, a stale timestamp or a body that is not a Stripe event is
400 and stores nothing; a verified event of a type the ledger does not translate is kept
verbatim and answered 200, so Stripe does not retry it. One carrying a time or an amount the
ledger cannot hold is 422 (the use case raises TimeOutOfRange or InvalidValue) and stores nothing."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from starlette.concurrency import run_in_threadpool

from api.errors import ApiProblem
from api.routers.events import read_body
from api.routing import LedgerRoute
from api.schemas.ingest import StripeWebhookAnswer
from application.stripe_sync import ConcurrentStripeChange
from infra.bootstrap import Container
from ingest import stripe as stripe_events
from ingest.cloudevents import media_type

router = APIRouter(route_class=LedgerRoute, prefix="/v1/webhooks", tags=["webhooks"])


async def _container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


@router.post(
    "/stripe",
    response_model=StripeWebhookAnswer,
    responses={
        400: {"description": "bad or missing signature, stale timestamp, or not a Stripe event"},
        413: {"description": "body too large"},
        415: {"description": "not application/json"},
        422: {
            "description": "a time outside [2000-01-01, now + 5 min] (time_out_of_range) or an amount"
            " beyond the ledger's limits (invalid_value): nothing is recorded"
        },
        503: {"description": "no webhook secret is configured, or the objects kept changing (retry)"},
    },
)
async def stripe_webhook(
    request: Request,
    container: Annotated[Container, Depends(_container)],
    stripe_signature: Annotated[str | None, Header()] = None,
) -> StripeWebhookAnswer:
    settings = container.settings
    if settings.stripe_webhook_secret is None or container.stripe_sync is None:
        raise ApiProblem(
            503, "Not configured", "LEDGER_STRIPE_WEBHOOK_SECRET is not set", code="webhooks_not_configured"
        )
    if media_type(request.headers.get("content-type")) != "application/json":
        raise ApiProblem(
            415, "Unsupported media type", "send application/json", code="unsupported_media_type"
        )
    body = await read_body(request, settings.ingest_max_body_bytes)
    try:
        event = stripe_events.verify(
            body,
            stripe_signature,
            settings.stripe_webhook_secret.get_secret_value(),
            settings.stripe_webhook_tolerance_seconds,
        )
    except stripe_events.BadSignature as refused:
        raise ApiProblem(400, "Bad signature", str(refused), code="invalid_signature") from None
    except stripe_events.UnreadableEvent as unreadable:
        raise ApiProblem(400, "Malformed event", str(unreadable), code="malformed_json") from None
    try:
        outcome = await run_in_threadpool(container.stripe_sync.receive, event)
    except ConcurrentStripeChange as busy:
        raise ApiProblem(
            503, "Busy", str(busy), code="concurrent_change", headers={"Retry-After": "1"}
        ) from None
    container.wake_projection()
    return StripeWebhookAnswer(id=event.id, type=event.type, status=outcome.status, position=outcome.position)
