"""Meter reports (SPEC section 10, seed 003): an instance's usage report, read into the ingest
command that records it, so it takes the ingest path (limits, business time, exactly once).

A report is idempotent on (customer, metric, timestamp): the idempotency key derives from them
(the timestamp in UTC, so one moment written with two offsets is one key), and the fingerprint
covers what was measured (value and properties). The same report again is a duplicate; the same
key with another value is a conflict."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson

from application.ingestion import USAGE_VALUE_TYPES, EventKey, RecordUsage
from domain.business_time import check_business_time
from domain.errors import InvalidValue
from domain.usage import check_metric, normalize_usage_value

# The ingest `source` of meter reports: their keys live in a space of their own.
METER_SOURCE = "urn:ledger:meter-events"
# What VaultAI reports daily: `user_count` is this metric's value.
ACTIVE_USERS = "active_users"


@dataclass(frozen=True)
class MeterReport:
    customer_id: UUID
    metric: str
    value: Any
    timestamp: datetime
    properties: dict[str, Any] = field(default_factory=dict)


def report_key(customer_id: UUID, metric: str, moment: datetime) -> str:
    return f"{customer_id}:{metric}:{moment.isoformat()}"


def _fingerprint(measured: dict[str, Any]) -> str:
    try:
        encoded = orjson.dumps(measured, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except TypeError:  # a value orjson refuses (an integer beyond 64 bits): its repr instead
        encoded = repr(sorted(measured.items())).encode()
    return hashlib.sha256(encoded).hexdigest()[:32]


def record_command(report: MeterReport, now: datetime) -> RecordUsage:
    """The ingest command of a report, checked: a DomainError names the field at fault
    (`timestamp` outside [2000-01-01, now + 5 min], a negative or non-numeric `value`...)."""
    moment = check_business_time(report.timestamp, now, "timestamp")  # in UTC; naive is read as UTC
    metric = check_metric(report.metric)
    if isinstance(report.value, bool) or not isinstance(report.value, USAGE_VALUE_TYPES):
        raise InvalidValue("a usage value is a number or a decimal string", field="value")
    value = normalize_usage_value(report.value)
    content_hash = _fingerprint({"metric": metric, "value": value, "properties": report.properties})
    key = EventKey.of(0, METER_SOURCE, report_key(report.customer_id, metric, moment), content_hash)
    return RecordUsage(
        key=key,
        customer_id=report.customer_id,
        external_id=None,
        metric=metric,
        value=value,
        properties=report.properties,
        occurred_at=moment,
    )
