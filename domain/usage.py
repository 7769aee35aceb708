from __future__ import annotations

import copy
import hashlib
import math
from datetime import datetime
from decimal import Context, Decimal, InvalidOperation
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.base import LedgerAggregate
from domain.errors import InvalidValue

# A measurement is a quantity: at most 10^9, like every quantity the ledger accepts (SPEC
# section 5, "Limits that hold on every path"), with at most 18 decimals.
MAX_USAGE_VALUE = 10**9
MAX_DECIMALS = 18


def normalize_usage_value(value: str | int | float | Decimal) -> str:
    """Usage values are exact decimals kept as strings (never floats) in the log."""
    if isinstance(value, bool):
        raise InvalidValue("a usage value is a number", field="value")
    if type(value) is int and 0 <= value <= MAX_USAGE_VALUE:
        return str(value)  # the common case, already normal
    if isinstance(value, str) and len(value) > 64:  # never parse a huge string to refuse it
        raise InvalidValue("a usage value is a number of at most 64 characters", field="value")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise InvalidValue(f"'{value}' is not a number", field="value") from None
    if not number.is_finite() or number < 0:
        raise InvalidValue("a usage value is a finite number of at least 0", field="value")
    # Compared by its exponent first: 1E+999999999 is refused without being expanded.
    if number.adjusted() > 9 or number > MAX_USAGE_VALUE:
        raise InvalidValue(f"a usage value is at most 10^9 ({MAX_USAGE_VALUE})", field="value")
    if -number.as_tuple().exponent > MAX_DECIMALS:  # type: ignore[operator]
        raise InvalidValue(f"a usage value has at most {MAX_DECIMALS} decimals", field="value")
    # Normalize with as many digits as the value has (the default context would round it to
    # 28), and drop the sign of a negative zero.
    exact = Context(prec=max(len(number.as_tuple().digits), 1))
    text = format(number.normalize(exact).copy_abs(), "f")
    return text


MAX_METRIC_LENGTH = 200


def check_metric(metric: str) -> str:
    if not isinstance(metric, str) or not metric.strip():
        raise InvalidValue("metric is a non-blank string", field="metric")
    if len(metric) > MAX_METRIC_LENGTH:
        raise InvalidValue(f"metric has at most {MAX_METRIC_LENGTH} characters", field="metric")
    return metric


# The group of usage that lacks the property a quota groups by (or holds no string, number or
# boolean there): such usage still counts, under this group (SPEC section 10).
NO_GROUP = ""
MAX_GROUP_LENGTH = 200


def usage_group(properties: Any, group_by: str | None) -> str:
    """The group a usage record counts in under a quota that groups by the property `group_by`:
    the property's value as text (a number or boolean as JSON writes it), else `NO_GROUP`. A
    value longer than MAX_GROUP_LENGTH is shortened to a prefix and a digest of the whole, so
    distinct values stay distinct and the group fits an index key."""
    if group_by is None or not isinstance(properties, dict):
        return NO_GROUP
    value = properties.get(group_by)
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = value
    elif isinstance(value, int | float) and math.isfinite(value):
        text = str(value)
    else:
        return NO_GROUP
    text = text.replace("\x00", "")
    if len(text) <= MAX_GROUP_LENGTH:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{text[: MAX_GROUP_LENGTH - 18]}~{digest}"


class UsageRecord(LedgerAggregate):
    """One measurement. Its id comes from the sender's idempotency key, so a resent
    measurement lands on the same aggregate and is refused by the store as a duplicate.

    `source` and `idempotency_key` are the sender's (CloudEvent `source` and `id`);
    `content_hash` fingerprints what was sent, so that a resend with the same key but another
    content can be told apart from a harmless duplicate."""

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
        source: str = "",
        content_hash: str = "",
    ) -> UsageRecord:
        return cls(
            id=record_id,
            customer_id=customer_id,
            metric=check_metric(metric),
            value=normalize_usage_value(value),
            idempotency_key=idempotency_key,
            properties=properties,
            occurred_at=occurred_at,
            source=source,
            content_hash=content_hash,
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
        source: str = "",
        content_hash: str = "",
    ) -> None:
        self.customer_id = customer_id
        self.metric = metric
        self.value = value
        self.idempotency_key = idempotency_key
        self.properties = copy.deepcopy(properties)  # never share a dict with the recorded event
        self.occurred_at = occurred_at
        self.source = source
        self.content_hash = content_hash

    def correct(self, *, value: str | int | Decimal, correction_key: str, occurred_at: datetime) -> None:
        """Replace the measured value; the original occurred_at (its period) is kept."""
        self._correct(
            value=normalize_usage_value(value), correction_key=correction_key, occurred_at=occurred_at
        )

    @event("Corrected")
    def _correct(self, value: str, correction_key: str, occurred_at: datetime) -> None:
        self.value = value
