"""Outgoing webhooks (SPEC section 8): endpoints and their deliveries, admin keys only (an
endpoint's URL says where the ledger's data goes, and its deliveries what was sent there).

Reads come from what the webhook fan-out has applied; `min_position` waits for it (a write's
position: the endpoint it created, or the deliveries of the events up to it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, status
from psycopg import Connection

from api.deps import AdminKey, ContainerDep, command_context, wait_for_read_models, written
from api.errors import ApiProblem
from api.routing import LedgerRoute
from api.schemas.common import ListOf
from api.schemas.webhooks import (
    WebhookDeliveryOut,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointOut,
    WebhookEndpointWritten,
)
from application.outcome import Outcome
from application.webhooks import CreateWebhookEndpoint, WebhookEndpoints
from domain.errors import InvalidTransition, NotFound, WebhookDeliveryInFlight, WebhookEndpointDisabled
from infra.bootstrap import Container
from infra.webhook_store import get_delivery, get_endpoint, list_deliveries, list_endpoints, resend
from infra.webhook_vault import VaultKeyMismatch
from projections.queries import decode_token, encode_token
from projections.webhook_fanout import NAME as FANOUT

router = APIRouter(route_class=LedgerRoute, tags=["webhooks"])
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"description": "The endpoint is disabled or deleted, or an attempt is in flight"}
}


def _endpoints(container: Container) -> WebhookEndpoints:
    if container.webhooks is None:
        raise ApiProblem(503, "Not available", "webhooks are not set up", code="webhooks_unavailable")
    return container.webhooks


@contextmanager
def _vault_problems() -> Iterator[None]:
    try:
        yield
    except VaultKeyMismatch as mismatch:
        raise ApiProblem(
            503,
            "Webhook key mismatch",
            f"{mismatch}. Nothing was recorded.",
            code="webhook_key_mismatch",
            headers={"Retry-After": "60"},
        ) from None


def webhook_connection(
    container: ContainerDep,
    _: AdminKey,
    min_position: Annotated[
        int | None, Query(ge=0, description="wait until the webhook fan-out has applied this position")
    ] = None,
) -> Iterator[Connection[Any]]:
    wait_for_read_models(
        container,
        min_position,
        FANOUT,
        "the webhook fan-out (it runs in `ledger up` and `ledger policies`) has",
    )
    with container.pool.connection() as conn:
        yield conn


WebhookConn = Annotated[Connection[Any], Depends(webhook_connection)]


def _created(container: Container, outcome: Outcome) -> dict[str, Any]:
    answer = written(container, outcome)
    answer.pop("secret_id", None)
    with _vault_problems():
        answer["secret"] = _endpoints(container).reveal(outcome)
    return answer


def _written(container: Container, outcome: Outcome) -> dict[str, Any]:
    answer = written(container, outcome)
    answer.pop("secret_id", None)
    return answer


@router.post(
    "/v1/webhook-endpoints", status_code=status.HTTP_201_CREATED, response_model=WebhookEndpointCreated
)
def create_webhook_endpoint(
    body: WebhookEndpointCreate, request: Request, container: ContainerDep, principal: AdminKey
) -> dict[str, Any]:
    """Register an endpoint; the answer holds its signing secret, shown this once."""
    cmd = CreateWebhookEndpoint(
        url=body.url, event_types=list(body.event_types), description=body.description
    )
    with _vault_problems():
        outcome = _endpoints(container).create(cmd, command_context(request, principal, body, None))
    return _created(container, outcome)


@router.get("/v1/webhook-endpoints", response_model=ListOf[WebhookEndpointOut])
def list_webhook_endpoints(
    conn: WebhookConn,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    after = int(decode_token(cursor, "endpoint")) if cursor else 0
    rows = list_endpoints(conn, after, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return {"data": rows, "next_cursor": encode_token("endpoint", str(rows[-1]["seq"])) if more else None}


@router.get("/v1/webhook-endpoints/{endpoint_id}", response_model=WebhookEndpointOut)
def get_webhook_endpoint(endpoint_id: UUID, conn: WebhookConn) -> dict[str, Any]:
    found = get_endpoint(conn, endpoint_id)
    if found is None:
        raise NotFound(f"no webhook endpoint with id {endpoint_id}")
    return found


@router.delete(
    "/v1/webhook-endpoints/{endpoint_id}", response_model=WebhookEndpointWritten, responses=CONFLICT
)
def delete_webhook_endpoint(
    endpoint_id: UUID, request: Request, container: ContainerDep, principal: AdminKey
) -> dict[str, Any]:
    """Stop delivering to the endpoint and destroy its secrets; its deliveries stay listed."""
    outcome = _endpoints(container).delete(endpoint_id, command_context(request, principal, None, None))
    return _written(container, outcome)


@router.post("/v1/webhook-endpoints/{endpoint_id}/rotate-secret", response_model=WebhookEndpointCreated)
def rotate_webhook_secret(
    endpoint_id: UUID, request: Request, container: ContainerDep, principal: AdminKey
) -> dict[str, Any]:
    """A new signing secret, shown this once. For 24 hours both sign every delivery (two
    `v1,` signatures), so receivers can switch without missing one; then only the new one."""
    with _vault_problems():
        outcome = _endpoints(container).rotate_secret(
            endpoint_id, command_context(request, principal, None, None)
        )
    return _created(container, outcome)


@router.get("/v1/webhook-endpoints/{endpoint_id}/deliveries", response_model=ListOf[WebhookDeliveryOut])
def list_webhook_deliveries(
    endpoint_id: UUID,
    conn: WebhookConn,
    status: Annotated[str | None, Query(pattern="^(pending|succeeded|failed|canceled)$")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """Newest first, each with its attempts and answers."""
    if get_endpoint(conn, endpoint_id) is None:
        raise NotFound(f"no webhook endpoint with id {endpoint_id}")
    before = int(decode_token(cursor, "delivery")) if cursor else None
    rows = list_deliveries(conn, endpoint_id, status=status, before_seq=before, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "data": [delivery_out(r) for r in rows],
        "next_cursor": encode_token("delivery", str(rows[-1]["seq"])) if more else None,
    }


@router.post(
    "/v1/webhook-deliveries/{delivery_id}/resend", response_model=WebhookDeliveryOut, responses=CONFLICT
)
def resend_webhook_delivery(delivery_id: UUID, container: ContainerDep, _: AdminKey) -> dict[str, Any]:
    """Attempt the delivery again now, with the same webhook-id and body, and a fresh schedule
    of retries should it fail again."""
    endpoints = _endpoints(container)
    with container.pool.connection() as conn:
        refused = resend(conn, delivery_id, endpoints.clock())
        if refused == "not_found":
            raise NotFound(f"no webhook delivery with id {delivery_id}")
        if refused == "endpoint_disabled":
            raise WebhookEndpointDisabled("the delivery's endpoint is disabled")
        if refused == "endpoint_deleted":
            raise InvalidTransition("the delivery's endpoint was deleted")
        if refused == "in_flight":
            raise WebhookDeliveryInFlight(
                "an attempt of this delivery is in flight: resend once it has an answer"
            )
        found = get_delivery(conn, delivery_id)
    container.wake_dispatch()
    assert found is not None, "the delivery was just made due"
    return delivery_out(found)


def delivery_out(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "endpoint_id": row["endpoint_id"],
        "webhook_id": row["message_id"],
        "type": row["type"],
        "position": row["position"],
        "status": row["status"],
        "attempt_count": row["attempts"],
        "next_attempt_at": row["next_attempt_at"] if row["status"] == "pending" else None,
        "last_status_code": row["last_status_code"],
        "last_error": row["last_error"],
        "created_at": row["created_at"],
        "delivered_at": row["delivered_at"],
        "attempts": row["attempt_log"],
    }
