"""The external payment backend of seed 004 (SPEC 8), over HTTP.

    POST {base}/api/v1/payments/initiate   {amount, currency, invoice_id, customer_id,
                                            callback_url, idempotency_key}
                                           → {external_payment_id, status, payment_url?}
    GET  {base}/api/v1/payments/{id}/status → {status, failure_code?, failure_message?}
    POST {base}/api/v1/payments/{id}/cancel
all with `Authorization: Bearer <key>`; amounts in integer minor units beside the currency.
Its callbacks to the ledger are signed with the same key: `X-Signature: sha256=<hex HMAC-SHA256
of the raw body>` (`verify_callback_signature`)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

STATUSES = ("pending", "succeeded", "failed", "canceled")
SIGNATURE_HEADER = "X-Signature"


class BackendUnavailable(Exception):
    """The backend could not be reached or did not answer as its contract says: try again later."""


@dataclass(frozen=True)
class BackendPayment:
    external_payment_id: str
    status: str
    payment_url: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None


class PaymentBackend:
    def __init__(self, base_url: str, api_key: str, *, timeout_seconds: float = 10.0) -> None:
        self.api_key = api_key
        self.client = httpx.Client(
            base_url=base_url.rstrip("/") + "/api/v1/payments",
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout_seconds,
        )

    def close(self) -> None:
        self.client.close()

    def initiate(
        self,
        *,
        amount: int,
        currency: str,
        invoice_id: str,
        customer_id: str,
        callback_url: str,
        idempotency_key: str,
    ) -> BackendPayment:
        body = {
            "amount": amount,
            "currency": currency,
            "invoice_id": invoice_id,
            "customer_id": customer_id,
            "callback_url": callback_url,
            "idempotency_key": idempotency_key,
        }
        answer = self._call("POST", "/initiate", json=body)
        external_id = answer.get("external_payment_id")
        if not isinstance(external_id, str) or not external_id.strip():
            raise BackendUnavailable("the backend's answer names no external_payment_id")
        return _payment(external_id, answer)

    def status(self, external_payment_id: str) -> BackendPayment:
        return _payment(external_payment_id, self._call("GET", f"/{_quoted(external_payment_id)}/status"))

    def cancel(self, external_payment_id: str) -> BackendPayment:
        return _payment(external_payment_id, self._call("POST", f"/{_quoted(external_payment_id)}/cancel"))

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise BackendUnavailable(f"{method} {path}: {type(error).__name__} {error}") from error
        if response.status_code >= 300:
            raise BackendUnavailable(f"{method} {path}: HTTP {response.status_code} {response.text[:200]}")
        try:
            answer = response.json()
        except ValueError as error:
            raise BackendUnavailable(f"{method} {path}: the answer is not JSON") from error
        if not isinstance(answer, dict):
            raise BackendUnavailable(f"{method} {path}: the answer is not a JSON object")
        return answer


def _payment(external_payment_id: str, answer: dict[str, Any]) -> BackendPayment:
    status = answer.get("status")
    if status not in STATUSES:
        raise BackendUnavailable(f"the backend answered an unknown status {str(status)[:40]!r}")
    return BackendPayment(
        external_payment_id=external_payment_id,
        status=status,
        payment_url=_text(answer.get("payment_url")),
        failure_code=_text(answer.get("failure_code")),
        failure_message=_text(answer.get("failure_message")),
    )


def _text(value: Any) -> str | None:
    return value[:500] if isinstance(value, str) and value else None


def _quoted(external_payment_id: str) -> str:
    return quote(external_payment_id, safe="")


def callback_signature(body: bytes, key: str) -> str:
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def verify_callback_signature(body: bytes, header: str | None, key: str) -> bool:
    """Whether `header` is the signature of exactly these bytes under the backend's key."""
    if not header:
        return False
    return hmac.compare_digest(header.strip().encode(), callback_signature(body, key).encode())
