"""A real webhook receiver for the tests: an HTTP server on a free local port that verifies every
request with the `standardwebhooks` library (the reference implementation, written by nobody
here), answers as the test tells it (2xx, 500, 410, 429 with Retry-After, no answer at all), and
keeps everything it was sent."""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

HANG = -1  # an answer that never comes (the sender's timeout decides)


@dataclass(frozen=True)
class Received:
    webhook_id: str
    timestamp: str
    signature: str
    body: bytes
    verified_by: tuple[str, ...]  # the secrets (whsec_...) the library accepts it with
    answered: int

    @property
    def message(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.body)
        return found

    @property
    def type(self) -> str:
        return str(self.message["type"])


@dataclass
class Receiver:
    secrets: list[str] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    default: tuple[int, dict[str, str]] = (200, {})
    _answers: deque[tuple[int, dict[str, str]]] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _release: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def answer(self, status: int, headers: dict[str, str] | None = None, *, times: int | None = None) -> None:
        """Answer the next `times` requests so (every one from now on when None)."""
        with self._lock:
            if times is None:
                self._answers.clear()
                self.default = (status, headers or {})
            else:
                self._answers.extend([(status, headers or {})] * times)

    def _next_answer(self) -> tuple[int, dict[str, str]]:
        with self._lock:
            return self._answers.popleft() if self._answers else self.default

    def verified(self, body: bytes, headers: dict[str, str]) -> tuple[str, ...]:
        ok = []
        for secret in self.secrets:
            try:
                Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                continue
            ok.append(secret)
        return tuple(ok)

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, extra = receiver._next_answer()
                with receiver._lock:
                    receiver.received.append(
                        Received(
                            headers.get("webhook-id", ""),
                            headers.get("webhook-timestamp", ""),
                            headers.get("webhook-signature", ""),
                            body,
                            receiver.verified(body, headers),
                            status,
                        )
                    )
                if status == HANG:
                    receiver._release.wait(60)
                    return
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the default 5 drops connections a concurrent sender opens

        self._release.clear()
        self._server = Server(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Down: the port refuses connections until `start()` again (the same port)."""
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def ids(self) -> list[str]:
        with self._lock:
            return [r.webhook_id for r in self.received]

    def delivered(self) -> list[Received]:
        """The requests it acknowledged with a 2xx."""
        with self._lock:
            return [r for r in self.received if 200 <= r.answered <= 299]
