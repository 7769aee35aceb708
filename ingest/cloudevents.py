"""CloudEvents 1.0 over HTTP, read into ingest commands.

Content modes (SPEC section 5): structured (`application/cloudevents+json`), batch
(`application/cloudevents-batch+json`), a plain JSON array (`application/json`) and binary
(`ce-*` headers, the body is the data). A request that cannot be read at all (not JSON, not an
event or a list of events, too many events) raises `UnreadableRequest`; an event that can be read
but is wrong becomes a `Rejection` with a machine-readable code and a reason, so one bad event
never drops the good ones of its batch.

Attributes are checked by the `cloudevents` SDK; `time` is occurred_at, `subject` the customer's
external_id, and (`source`, `id`) the permanent idempotency key, required in every mode (the SDK
would make up an id for a binary event without `ce-id`, and a retry would then count twice).
`content_hash` fingerprints the canonical event, not its representation: the attributes as the
SDK reads them (time in UTC, extension values as their CloudEvents string form, since a header
can only carry text) and the data as parsed, keys sorted. So the same event sent in binary and
then in structured mode is a duplicate, and a resend with the same key and another content is
told apart from it."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple
from uuid import UUID

import orjson
from cloudevents.core.bindings.http import HTTPMessage, from_binary
from cloudevents.core.exceptions import BaseCloudEventException, CloudEventValidationError
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from application.ingestion import CorrectUsage, EventKey, IngestCommand, RecordUsage, UpsertCustomer
from domain import ids

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
JSON = "application/json"

ALIASES = {"user.created": "customer.created", "user.updated": "customer.updated"}
TYPES = frozenset({"customer.created", "customer.updated", "usage.recorded", "usage.corrected"})
MAX_KEY_LENGTH = 255
MAX_SOURCE_LENGTH = 1024

_FORMAT = JSONFormat()


class UnreadableRequest(Exception):
    """The body is not a CloudEvent, nor a list of them (`field`: the part at fault, if one)."""

    def __init__(self, message: str, *, code: str = "malformed_json", field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


class UnsupportedMediaType(Exception):
    """Neither a CloudEvents content mode nor JSON."""


class ReadEvent(NamedTuple):
    """A well-formed CloudEvent of a type the ledger ingests."""

    index: int  # type: ignore[assignment]  # (shadows tuple.index, which nothing calls)
    id: str
    source: str
    type: str  # canonical: aliases resolved
    subject: str | None
    time: datetime | None
    data: dict[str, Any]
    content_hash: str
    sent: dict[str, Any]  # as represented when sent: what fingerprints were taken over before


class Rejection(NamedTuple):
    index: int  # type: ignore[assignment]  # (shadows tuple.index, which nothing calls)
    id: str | None
    code: str
    reason: str
    field: str | None = None


Read = ReadEvent | Rejection


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_binary(headers: Mapping[str, str]) -> bool:
    return any(name.lower() == "ce-specversion" for name in headers)


def read_request(
    content_type: str | None, headers: Mapping[str, str], body: bytes
) -> tuple[list[Read], bool]:
    """Every event of the request, in order, each read or rejected; and whether the request is
    a batch (an array) rather than a single event."""
    if is_binary(headers):
        return [_read_binary(headers, body)], False
    kind = media_type(content_type)
    if kind not in (STRUCTURED, BATCH, JSON):
        raise UnsupportedMediaType(
            f"send {STRUCTURED}, {BATCH}, {JSON} (an array of events) or binary mode (ce-* headers)"
        )
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise UnreadableRequest("the body is not valid JSON") from None
    if kind == BATCH and not isinstance(document, list):
        raise UnreadableRequest("a batch is a JSON array of events")
    if kind == STRUCTURED and not isinstance(document, dict):
        raise UnreadableRequest("a structured event is a JSON object")
    if isinstance(document, list):
        return [read_event(raw, index) for index, raw in enumerate(document)], True
    if isinstance(document, dict):
        return [read_event(document, 0)], False
    raise UnreadableRequest("the body is neither a CloudEvent nor an array of them")


def read_event(raw: Any, index: int) -> Read:
    """One structured-mode event (a JSON object) into a ReadEvent or a Rejection."""
    if not isinstance(raw, dict):
        return Rejection(index, None, "invalid_event", "an event is a JSON object")
    plain = _read_plain(raw, index)
    if plain is not None:
        return plain
    event_id = raw.get("id") if isinstance(raw.get("id"), str) else None
    attributes = dict(raw)
    data = attributes.pop("data", None)
    if "data_base64" in attributes:
        return Rejection(index, event_id, "invalid_data", "data must be JSON, not data_base64")
    content_type = attributes.get("datacontenttype")
    if content_type is not None and not (
        isinstance(content_type, str) and JSONFormat.JSON_CONTENT_TYPE_PATTERN.match(content_type)
    ):
        return Rejection(index, event_id, "invalid_data", "datacontenttype must be JSON")
    time = attributes.get("time")
    if time is not None:
        if not isinstance(time, str):
            return Rejection(index, event_id, "invalid_event", "time is an RFC 3339 timestamp")
        try:
            attributes["time"] = datetime.fromisoformat(time)
        except ValueError:
            return Rejection(index, event_id, "invalid_event", f"time '{time[:64]}' is not RFC 3339")
    return _checked(index, event_id, attributes, data, sent=raw)


_PLAIN = frozenset({"specversion", "id", "source", "type", "subject", "time", "data"})


def _read_plain(raw: dict[str, Any], index: int) -> ReadEvent | None:
    """The shape nearly every event has (the required attributes, `subject`, `time` and a data
    object, nothing else), read in one pass: what `_checked` would answer for it, at a third of
    the cost. None for anything else, including every event the general path would refuse, so
    that it alone words refusals."""
    if not _PLAIN.issuperset(raw):
        return None
    event_id, source, kind = raw.get("id"), raw.get("source"), raw.get("type")
    subject, time, data = raw.get("subject"), raw.get("time"), raw.get("data")
    if (
        raw.get("specversion") != "1.0"
        or not isinstance(event_id, str)
        or not isinstance(source, str)
        or not isinstance(kind, str)
        or not isinstance(data, dict)
        or not event_id
        or not source
        or len(event_id) > MAX_KEY_LENGTH
        or len(source) > MAX_SOURCE_LENGTH
        or (subject is not None and (not isinstance(subject, str) or not subject.strip()))
    ):
        return None
    canonical_kind = ALIASES.get(kind, kind)
    if canonical_kind not in TYPES:
        return None
    canonical = dict(raw)  # canonical_event's answer for this shape
    moment: datetime | None = None
    if time is not None:
        if not isinstance(time, str):
            return None
        try:
            moment = datetime.fromisoformat(time)
        except ValueError:
            return None
        if moment.tzinfo is None or moment.utcoffset() is None:
            return None
        moment = canonical["time"] = moment.astimezone(UTC)  # orjson writes it as isoformat() would
    try:
        encoded = orjson.dumps(canonical, option=_CANONICAL)
    except TypeError:
        return None
    if b"\\u0000" in encoded or b"\\x00" in encoded:
        return None
    content = hashlib.sha256(encoded).hexdigest()[:32]
    return ReadEvent(index, event_id, source, canonical_kind, subject, moment, data, content, raw)


def _read_binary(headers: Mapping[str, str], body: bytes) -> Read:
    event_id = next((v for k, v in headers.items() if k.lower() == "ce-id"), None)
    if not event_id:
        raise UnreadableRequest(
            "a binary-mode event needs a ce-id header: its id is the idempotency key",
            code="missing_id",
            field="ce-id",
        )
    try:
        event = from_binary(HTTPMessage(headers=dict(headers), body=body), _FORMAT, _factory)
    except _Invalid as invalid:
        return Rejection(0, event_id, invalid.code, invalid.reason)
    except (BaseCloudEventException, ValueError, OverflowError) as error:
        return Rejection(0, event_id, "invalid_event", _describe(error))
    attributes = dict(event.get_attributes())
    data = event.get_data()
    sent = {k: v for k, v in headers.items() if k.lower().startswith("ce-")}
    return _checked(0, event_id, attributes, data, sent={**sent, "data": data}, validated=True)


class _Invalid(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _factory(attributes: dict[str, Any], data: Any) -> CloudEvent:
    if isinstance(data, str | bytes):
        raise _Invalid("invalid_data", "data must be a JSON object")
    return CloudEvent(attributes, data)


def _describe(error: Exception) -> str:
    if isinstance(error, CloudEventValidationError):
        messages = [str(e) for errors in error.errors.values() for e in errors]
        return "; ".join(dict.fromkeys(messages)) or "invalid attributes"
    return str(error) or type(error).__name__


def _attribute_problem(attributes: dict[str, Any]) -> str | None:
    """The CloudEvents 1.0 attribute rules the SDK's `CloudEvent` checks, for structured events,
    checked inline: this runs once per event of every batch, and the SDK object (made only to be
    dropped) would cost a tenth of the ingest path. Anything unusual goes to the SDK itself,
    so its wording and its rules decide."""
    if attributes.get("specversion") != "1.0":
        return "specversion is required and must be 1.0"
    for name in ("id", "source", "type"):
        value = attributes.get(name)
        if not isinstance(value, str) or not value:
            return f"{name} is required, a non-empty string"
    for name, value in attributes.items():
        if name in _KNOWN:
            if name != "time" and not isinstance(value, str):
                break
        elif not (
            name.isalnum() and name.islower() and len(name) <= 20 and isinstance(value, _EXTENSION_TYPES)
        ):
            break
    else:
        return None
    try:
        CloudEvent(attributes, None)
    except BaseCloudEventException as error:
        return _describe(error)
    return None


_EXTENSION_TYPES = (str, int, bool)
_KNOWN = frozenset(
    {"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema"}
)


def _checked(
    index: int,
    event_id: str | None,
    attributes: dict[str, Any],
    data: Any,
    *,
    sent: dict[str, Any],
    validated: bool = False,
) -> Read:
    if not validated:
        problem = _attribute_problem(attributes)
        if problem is not None:
            return Rejection(index, event_id, "invalid_event", problem)
    event_id = str(attributes["id"])  # checked: a non-empty string
    source = str(attributes["source"])
    if len(event_id) > MAX_KEY_LENGTH or len(source) > MAX_SOURCE_LENGTH:
        return Rejection(
            index,
            event_id,
            "invalid_event",
            f"id has at most {MAX_KEY_LENGTH} characters, source {MAX_SOURCE_LENGTH}",
        )
    time: datetime | None = attributes.get("time")
    if time is not None:
        if time.tzinfo is None or time.utcoffset() is None:
            return Rejection(index, event_id, "invalid_event", "time must carry a UTC offset")
        time = attributes["time"] = time.astimezone(UTC)
    subject = attributes.get("subject")
    if subject is not None and (not isinstance(subject, str) or not subject.strip()):
        return Rejection(index, event_id, "invalid_event", "subject is a customer's external_id")
    kind = ALIASES.get(attributes["type"], attributes["type"])
    if kind not in TYPES:
        return Rejection(
            index,
            event_id,
            "unknown_type",
            f"type '{attributes['type'][:100]}' is not one the ledger ingests",
        )
    if not isinstance(data, dict):
        return Rejection(index, event_id, "invalid_data", "data is a JSON object")
    canonical = canonical_event(attributes, data)
    encoded = _encoded(canonical)
    if (b"\\u0000" in encoded or b"\\x00" in encoded) and _holds_nul(canonical):
        # PostgreSQL text cannot hold U+0000: refused here rather than failing a projector later
        return Rejection(index, event_id, "invalid_data", "text may not contain the NUL character (U+0000)")
    return ReadEvent(
        index, event_id, source, kind, subject, time, data, hashlib.sha256(encoded).hexdigest()[:32], sent
    )


def canonical_event(attributes: dict[str, Any], data: Any) -> dict[str, Any]:
    """The event whatever its content mode: what the fingerprint is taken over. `datacontenttype`
    is left out (the data is JSON in every mode, parsed), `time` is in UTC, and an extension's
    value is its CloudEvents canonical string (a binary-mode header is text: `12`, `true`)."""
    canonical = {**attributes, "data": data}
    canonical.pop("datacontenttype", None)
    if _KNOWN.issuperset(attributes):  # the common case: the one datetime is `time`
        time = attributes.get("time")
        if isinstance(time, datetime):
            canonical["time"] = time.astimezone(UTC).isoformat()
        return canonical
    for name, value in attributes.items():
        if isinstance(value, datetime):
            canonical[name] = value.astimezone(UTC).isoformat()
        elif name not in _KNOWN:
            canonical[name] = _canonical_string(value)
    return canonical


def _canonical_string(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower()  # the SDK writes a boolean header as Python's `True`
    return value


def content_hash(sent: dict[str, Any]) -> str:
    """The fingerprint of an event: its canonical attributes and data, keys sorted."""
    return hashlib.sha256(_encoded(sent)).hexdigest()[:32]


_CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def _encoded(sent: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(sent, option=_CANONICAL)
    except TypeError:  # a value orjson refuses (an integer beyond 64 bits): canonical repr instead
        return repr(sorted(sent.items())).encode()


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v) for v in value)
    return False


# ---------------------------------------------------------------------------- into commands


_customer_id = functools.lru_cache(maxsize=100_000)(ids.customer_id)  # subjects repeat


class OutOfScope(Exception):
    """A key scoped to one customer sent an event of another customer."""


def to_command(event: ReadEvent, scope: UUID | None) -> IngestCommand | Rejection:
    """Translate a read event into its ingest command. `scope` is the customer an ingest key is
    limited to: its events may leave `subject` out, and may not name another customer."""
    if event.subject is not None:
        customer = _customer_id(event.subject)
    elif scope is not None:
        customer = scope
    else:
        return Rejection(
            event.index, event.id, "missing_field", "subject (the customer's external_id) is required"
        )
    if scope is not None and customer != scope:
        raise OutOfScope(f"this key writes only the events of customer {scope}")
    key = EventKey(
        event.index,
        event.source,
        event.id,
        event.content_hash,
        ids.ingested_event_id(event.source, event.id),
        functools.partial(content_hash, event.sent),
    )
    data = event.data
    try:
        if event.type == "usage.recorded":
            metric, value = _required(data, "metric"), _required(data, "value")
            return RecordUsage(
                key, customer, event.subject, metric, value, data.get("properties") or {}, event.time
            )
        if event.type == "usage.corrected":
            return CorrectUsage(
                key=key,
                customer_id=customer,
                corrects=_text(data, "corrects", required=True) or "",
                value=_required(data, "value"),
                occurred_at=event.time,
            )
        tax = data.get("tax_rate_bps")
        if tax is not None and (isinstance(tax, bool) or not isinstance(tax, int)):
            raise _Missing("invalid_value", "data.tax_rate_bps is an integer")
        metadata = data.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise _Missing("invalid_value", "data.metadata is a JSON object")
        return UpsertCustomer(
            key=key,
            customer_id=customer,
            external_id=event.subject,
            create=event.type == "customer.created",
            email=_text(data, "email"),
            name=_text(data, "name"),
            currency=_text(data, "currency"),
            tax_rate_bps=tax,
            metadata=metadata,
            occurred_at=event.time,
        )
    except _Missing as missing:
        return Rejection(event.index, event.id, missing.code, missing.reason)


class _Missing(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _required(data: dict[str, Any], name: str) -> Any:
    if data.get(name) is None:
        raise _Missing("missing_field", f"data.{name} is required")
    return data[name]


def _text(data: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise _Missing("missing_field", f"data.{name} is required")
        return None
    if not isinstance(value, str):
        raise _Missing("invalid_value", f"data.{name} is a string")
    return value
