"""Deterministic ids: uuid5 from natural keys, so a retried command lands on the same aggregate."""

from __future__ import annotations

from uuid import UUID, uuid5

LEDGER_NAMESPACE = UUID("6f1c1f0e-9a57-4b1e-8f43-3c2b1f4f6a10")


def customer_id(external_id: str) -> UUID:
    return uuid5(LEDGER_NAMESPACE, f"customer:{external_id}")


def plan_id(code: str) -> UUID:
    return uuid5(LEDGER_NAMESPACE, f"plan:{code}")


def idempotency_record_id(scope: str, key: str) -> UUID:
    return uuid5(LEDGER_NAMESPACE, f"idempotency:{scope}:{key}")


def usage_record_id(source: str, event_id: str) -> UUID:
    return uuid5(LEDGER_NAMESPACE, f"usage:{source}:{event_id}")


def alert_id(alert_type: str, subject: str, occurrence: str = "") -> UUID:
    return uuid5(LEDGER_NAMESPACE, f"alert:{alert_type}:{subject}:{occurrence}")


INVOICE_NUMBERING_ID = uuid5(LEDGER_NAMESPACE, "invoice-numbering")
