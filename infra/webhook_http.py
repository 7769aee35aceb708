"""The webhook sender: Standard Webhooks 1.0 signing and one HTTP POST per attempt.

Signature: `v1,` + base64(HMAC-SHA256(secret, f"{webhook-id}.{webhook-timestamp}.{body}")), the
secret being the bytes behind `whsec_` (base64). While a rotated secret is still valid both sign,
space-separated, and a receiver accepts either (what the `standardwebhooks` library verifies).

An attempt gets one answer or none within the timeout (15 s by default, for the whole exchange,
not per read). Redirects are not followed (a 3xx is a failure, as the specification says only 2xx
succeeds), proxies from the environment are not used (the address check must see the real
target), and at most 1 KiB of the answer is read and kept, for the deliveries listing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ssl
import time
from dataclasses import dataclass

import certifi
import httpcore
import httpx

from infra.webhook_targets import GuardedBackend

USER_AGENT = "billing-ledger-webhooks/0.1"
EXCERPT_BYTES = 1024


def sign(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(secret, signed, hashlib.sha256).digest()).decode()


def signed_headers(secrets: list[bytes], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets),
    }


@dataclass(frozen=True)
class Answer:
    """What one attempt got: a status (None: no answer at all) or the reason there was none."""

    status_code: int | None
    duration_ms: int
    retry_after: str | None = None
    body_excerpt: str | None = None
    error: str | None = None


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool whose network backend checks every address it
    connects to (httpx takes no backend of its own, hence the pool set here)."""

    def __init__(self, *, allow_private: bool, max_connections: int, ssl_context: ssl.SSLContext) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
            network_backend=GuardedBackend(allow_private=allow_private),
        )


def tls_context() -> ssl.SSLContext:
    """Certificates verified against certifi's bundle (loading it takes tens of milliseconds:
    made once per process, shared by its senders)."""
    return ssl.create_default_context(cafile=certifi.where())


class WebhookSender:
    def __init__(
        self,
        *,
        allow_private: bool,
        timeout_seconds: float,
        max_connections: int = 100,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self.client = httpx.AsyncClient(
            transport=_GuardedTransport(
                allow_private=allow_private,
                max_connections=max_connections,
                ssl_context=ssl_context or tls_context(),
            ),
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(timeout_seconds),
            headers={"user-agent": USER_AGENT},
        )

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> Answer:
        started = time.monotonic()

        def took() -> int:
            return round((time.monotonic() - started) * 1000)

        try:
            async with asyncio.timeout(self.timeout_seconds):
                async with self.client.stream("POST", url, content=body, headers=headers) as response:
                    excerpt = await _excerpt(response)
                    return Answer(
                        response.status_code,
                        took(),
                        retry_after=response.headers.get("retry-after"),
                        body_excerpt=excerpt,
                    )
        except TimeoutError:
            return Answer(None, took(), error=f"no answer within {self.timeout_seconds:g}s")
        except httpx.HTTPError as failed:
            return Answer(None, took(), error=f"{type(failed).__name__}: {failed}"[:500])

    async def aclose(self) -> None:
        await self.client.aclose()


async def _excerpt(response: httpx.Response) -> str | None:
    read = b""
    async for chunk in response.aiter_bytes():
        read += chunk
        if len(read) >= EXCERPT_BYTES:
            break
    if not read:
        return None
    # PostgreSQL text holds no NUL; a receiver's answer is shown, never interpreted.
    return read[:EXCERPT_BYTES].decode("utf-8", errors="replace").replace("\x00", "\ufffd")
