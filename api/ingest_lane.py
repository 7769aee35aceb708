"""The ingest endpoint's own lane: `POST /v1/events` is answered by its endpoint function straight
from here, past the framework's routing and dependency resolution.

Nearly every request a ledger takes is an ingest request, most of them a single event; the
framework's per-request work (matching the path against every route, resolving dependencies, the
layers of its middleware) cost as much CPU as the ingest itself. The endpoint is the same function
either way (`api/routers/events.py`, which the OpenAPI document still describes), its exceptions
are answered by the app's own handlers, as ExceptionMiddleware would, and what none handles goes on
to ServerErrorMiddleware. It sits inside BodyLimitMiddleware, whose limit still holds."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from api.body_limit import INGEST_PATH
from api.routers.events import ingest_events


class IngestLane:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != INGEST_PATH:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await ingest_events(request)
        except Exception as error:
            handler = _handler_for(scope, error)
            if handler is None:
                raise
            response = await handler(request, error)
        await response(scope, receive, send)


def _handler_for(scope: Scope, error: Exception) -> Any:
    handlers = scope["app"].exception_handlers
    for kind in type(error).__mro__:
        if kind in handlers:
            return handlers[kind]
    return None
