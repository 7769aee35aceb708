from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import event

from domain.base import LedgerAggregate
from domain.errors import AlertAlreadyOpen, AlertAlreadyResolved, InvalidValue

SEVERITIES = ("low", "medium", "high", "critical")
OPEN, RESOLVED = "open", "resolved"

DEFAULT_SEVERITY = {
    "payment_failed": "critical",
    "invoice_overdue": "high",
    "customer_at_risk": "high",
    "subscription_canceled": "medium",
    "quota_threshold": "medium",
    "customer_inactive": "low",
    "projection_failed": "critical",
}


class Alert(LedgerAggregate):
    @classmethod
    def raise_alert(
        cls,
        *,
        alert_id: UUID,
        alert_type: str,
        severity: str,
        subject: str,
        message: str,
        customer_id: UUID | None,
        occurred_at: datetime,
    ) -> Alert:
        if severity not in SEVERITIES:
            raise InvalidValue("severity is low, medium, high or critical", field="severity")
        return cls(
            id=alert_id,
            alert_type=alert_type,
            severity=severity,
            subject=subject,
            message=message,
            customer_id=customer_id,
            occurred_at=occurred_at,
        )

    @event("Raised")
    def __init__(
        self,
        id: UUID,
        alert_type: str,
        severity: str,
        subject: str,
        message: str,
        customer_id: UUID | None,
        occurred_at: datetime,
    ) -> None:
        self.alert_type = alert_type
        self.severity = severity
        self.subject = subject
        self.message = message
        self.customer_id = customer_id
        self.status = OPEN
        self.raised_at = occurred_at
        self.resolved_at: datetime | None = None
        self.note: str | None = None

    def reopen(self, *, message: str, occurred_at: datetime) -> None:
        """The condition is back: the same alert (one per type and subject) is open again."""
        if self.status == OPEN:
            raise AlertAlreadyOpen("the alert is already open")
        self._reopen(message=message, occurred_at=occurred_at)

    @event("Reopened")
    def _reopen(self, message: str, occurred_at: datetime) -> None:
        self.status = OPEN
        self.message = message
        self.raised_at = occurred_at
        self.resolved_at = None
        self.note = None

    def resolve(self, *, note: str, occurred_at: datetime) -> None:
        if self.status == RESOLVED:
            raise AlertAlreadyResolved("the alert is already resolved")
        self._resolve(note=note, occurred_at=occurred_at)

    @event("Resolved")
    def _resolve(self, note: str, occurred_at: datetime) -> None:
        self.status = RESOLVED
        self.note = note
        self.resolved_at = occurred_at
