"""A payment backend following seed 004's contract (SPEC 8), as a small real HTTP server on a free
port: the ledger talks to it over the network exactly as to the real one.

    POST /api/v1/payments/initiate            → {external_payment_id, status, payment_url}
    GET  /api/v1/payments/{id}/status         → {external_payment_id, status, failure_code?}
    POST /api/v1/payments/{id}/cancel         → {external_payment_id, status: canceled}
Bearer-key authenticated; an `idempotency_key` seen before answers the payment it made then.
The test scripts it: what each new payment answers at first (`script`, default pending), what
its status then says (`settle`), whether it is down or slow, and it calls the ledger back with a
signed callback when told to (`call_back`)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from uuid import uuid4

import httpx


@dataclass
class BackendPayment:
    external_payment_id: str
    idempotency_key: str
    request: dict[str, Any]
    status: str
    failure_code: str | None = None


@dataclass
class FakePaymentBackend:
    api_key: str
    script: list[str] = field(default_factory=list)
    down: bool = False
    delay_seconds: float = 0.0
    payments: dict[str, BackendPayment] = field(default_factory=dict)
    initiate_calls: int = 0
    _by_key: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakePaymentBackend:
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._answer(backend.handle("GET", self.path, self.headers.get("Authorization"), b""))

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._answer(backend.handle("POST", self.path, self.headers.get("Authorization"), body))

            def _answer(self, answer: tuple[int, dict[str, Any]]) -> None:
                status, payload = answer
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the ledger gave up waiting (a slow answer): its loss, by design

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # ------------------------------------------------------------------ the contract

    def handle(
        self, method: str, path: str, authorization: str | None, body: bytes
    ) -> tuple[int, dict[str, Any]]:
        if method == "POST" and path.endswith("/initiate"):
            self.initiate_calls += 1
        if self.delay_seconds:
            time.sleep(self.delay_seconds)  # an answer that comes too late for the ledger
        if self.down:
            return 503, {"error": "maintenance"}
        if authorization != f"Bearer {self.api_key}":
            return 401, {"error": "unauthorized"}
        parts = path.strip("/").split("/")
        if parts[:3] != ["api", "v1", "payments"]:
            return 404, {"error": "not found"}
        with self._lock:
            if method == "POST" and parts[3:] == ["initiate"]:
                return self._initiate(json.loads(body))
            if len(parts) == 5 and parts[3] in self.payments:
                payment = self.payments[parts[3]]
                if method == "GET" and parts[4] == "status":
                    return 200, self._view(payment)
                if method == "POST" and parts[4] == "cancel":
                    payment.status = "canceled"
                    return 200, self._view(payment)
        return 404, {"error": "no such payment"}

    def _initiate(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        required = ("amount", "currency", "invoice_id", "customer_id", "callback_url", "idempotency_key")
        if any(name not in request for name in required) or not isinstance(request["amount"], int):
            return 422, {"error": "missing or bad field"}
        key = request["idempotency_key"]
        if key in self._by_key:
            return 200, self._view(self.payments[self._by_key[key]])
        external_id = f"pay_{uuid4().hex[:12]}"
        status = self.script.pop(0) if self.script else "pending"
        payment = BackendPayment(
            external_id, key, request, status, "card_declined" if status == "failed" else None
        )
        self.payments[external_id] = payment
        self._by_key[key] = external_id
        return 200, {**self._view(payment), "payment_url": f"https://pay.example/{external_id}"}

    @staticmethod
    def _view(payment: BackendPayment) -> dict[str, Any]:
        view: dict[str, Any] = {"external_payment_id": payment.external_payment_id, "status": payment.status}
        if payment.failure_code:
            view["failure_code"] = payment.failure_code
        return view

    # ------------------------------------------------------------------ what the test does with it

    def settle(self, external_payment_id: str, status: str) -> None:
        """The payment's outcome, as its status will say from now on."""
        payment = self.payments[external_payment_id]
        payment.status = status
        payment.failure_code = "card_declined" if status == "failed" else None

    def call_back(
        self, external_payment_id: str, status: str, *, event_id: str | None = None, key: str | None = None
    ) -> httpx.Response:
        """Settle the payment and tell the ledger, signed as the contract says (with `key` to sign
        with another key)."""
        self.settle(external_payment_id, status)
        payment = self.payments[external_payment_id]
        body = json.dumps(
            {
                "event_id": event_id or f"evt_{uuid4().hex[:12]}",
                "external_payment_id": external_payment_id,
                "status": status,
                "amount": payment.request["amount"],
                "currency": payment.request["currency"],
                **({"failure_code": payment.failure_code} if payment.failure_code else {}),
            }
        ).encode()
        return post_signed(payment.request["callback_url"], body, key or self.api_key)

    def made_for(self, invoice_id: str) -> list[BackendPayment]:
        return [p for p in self.payments.values() if p.request["invoice_id"] == invoice_id]


def post_signed(url: str, body: bytes, key: str) -> httpx.Response:
    signature = "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    return httpx.post(
        url, content=body, headers={"Content-Type": "application/json", "X-Signature": signature}, timeout=30
    )
