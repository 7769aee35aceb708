from __future__ import annotations

from datetime import datetime
from decimal import Context, Decimal, InvalidOperation
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.base import LedgerAggregate
from domain.errors import InvalidValue

MAX_INTEGER_DIGITS = 30
MAX_DECIMALS = 18


def normalize_usage_value(value: str | int | float | Decimal) -> str:
    """Usage values are exact decimals kept as strings (never floats) in the log."""
    if isinstance(value, bool):
        raise InvalidValue("a usage value is a number", field="value")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise InvalidValue(f"'{value}' is not a number", field="value") from None
    if not number.is_finite() or number < 0:
        raise InvalidValue("a usage value is a finite number of at least 0", field="value")
    # Bound the size of what is stored: an exponent like 1E+999999999 would expand to a GB string.
    if number.adjusted() >= MAX_INTEGER_DIGITS or -number.as_tuple().exponent > MAX_DECIMALS:  # type: ignore[operator]
        raise InvalidValue(
            f"a usage value has at most {MAX_INTEGER_DIGITS} integer digits and {MAX_DECIMALS} decimals",
            field="value",
        )
    # Normalize with as many digits as the value has (the default context would round it to
    # 28), and drop the sign of a negative zero.
    exact = Context(prec=max(len(number.as_tuple().digits), 1))
    text = format(number.normalize(exact).copy_abs(), "f")
    return text


class UsageRecord(LedgerAggregate):
    """One measurement. Its id comes from the sender's idempotency key, so a resent
    measurement lands on the same aggregate and is refused by the store as a duplicate."""

    @classmethod
    def record(
        cls,
        *,
        record_id: UUID,
        customer_id: UUID,
        metric: str,
        value: str | int | Decimal,
        idempotency_key: str,
        properties: dict[str, Any],
        occurred_at: datetime,
    ) -> UsageRecord:
        if not metric.strip():
            raise InvalidValue("metric cannot be blank", field="metric")
        return cls(
            id=record_id,
            customer_id=customer_id,
            metric=metric,
            value=normalize_usage_value(value),
            idempotency_key=idempotency_key,
            properties=properties,
            occurred_at=occurred_at,
        )

    @event("Recorded")
    def __init__(
        self,
        id: UUID,
        customer_id: UUID,
        metric: str,
        value: str,
        idempotency_key: str,
        properties: dict[str, Any],
        occurred_at: datetime,
    ) -> None:
        self.customer_id = customer_id
        self.metric = metric
        self.value = value
        self.idempotency_key = idempotency_key
        self.properties = properties
        self.occurred_at = occurred_at

    def correct(self, *, value: str | int | Decimal, correction_key: str, occurred_at: datetime) -> None:
        """Replace the measured value; the original occurred_at (its period) is kept."""
        self._correct(
            value=normalize_usage_value(value), correction_key=correction_key, occurred_at=occurred_at
        )

    @event("Corrected")
    def _correct(self, value: str, correction_key: str, occurred_at: datetime) -> None:
        self.value = value
