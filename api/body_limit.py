"""The door's size limit: a request body over LEDGER_MAX_BODY_BYTES (the CloudEvents endpoint:
LEDGER_INGEST_MAX_BODY_BYTES, batches being larger) is refused with a 413 problem+json.

A declared Content-Length over the limit is answered at once, without reading a byte of the
body; a body sent without one (chunked) is counted as it arrives and refused as soon as it
passes the limit. Either way nothing reaches a command: FastAPI reads and validates a body whole,
on the event loop, before the endpoint (and so any transaction) runs, so a client that is slow or
stalls mid-body holds no database connection and no lock."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import problem

INGEST_PATH = "/v1/events"


class BodyTooLarge(HTTPException):
    """Raised from `receive` when the body passes the limit; FastAPI lets HTTPExceptions raised
    while it reads a body through to the handlers (api/errors.py answers problem+json)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body exceeds {limit} bytes")
        self.limit = limit


def too_large(limit: int) -> JSONResponse:
    return problem(
        413,
        "Payload too large",
        f"the request body exceeds {limit} bytes",
        "payload_too_large",
        errors=[{"field": "body", "message": f"at most {limit} bytes"}],
    )


def _limit_for(scope: Scope) -> int | None:
    app = scope.get("app")
    container = getattr(getattr(app, "state", None), "container", None)
    if container is None:  # before the lifespan built it: nothing to protect yet
        return None
    settings = container.settings
    path: str = scope.get("path", "")
    if path == INGEST_PATH or path.startswith(INGEST_PATH + "/"):
        return int(settings.ingest_max_body_bytes)
    return int(settings.max_body_bytes)


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = _limit_for(scope) if scope["type"] == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await _refuse(limit, scope, receive, send)
            return
        received = 0
        started = False

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive_within_limit, send_tracking)
        except BodyTooLarge:
            if started:
                raise
            await _refuse(limit, scope, receive, send)


async def _refuse(limit: int, scope: Scope, receive: Receive, send: Send) -> None:
    # The rest of the body is never read: the connection is closed after the answer.
    response = too_large(limit)
    response.headers["Connection"] = "close"
    await response(scope, receive, send)
