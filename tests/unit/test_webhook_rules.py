"""The pure rules of outgoing webhooks: which events announce what, the endpoint's life, the retry
schedule, Retry-After, the addresses the ledger refuses, and signatures exactly as the reference
library (`standardwebhooks`) computes them."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from standardwebhooks.webhooks import Webhook

from domain.errors import InvalidValue, NotFound, WebhookEndpointDisabled
from domain.webhook_delivery import (
    FAILED,
    GONE,
    MAX_ATTEMPTS,
    RETRY,
    RETRY_DELAYS,
    SUCCEEDED,
    judge,
    retry_after,
    retry_delay,
)
from domain.webhook_endpoint import DELETED, DISABLED, ENABLED, WebhookEndpoint
from domain.webhook_types import LEDGER_EVENT_TYPES, WEBHOOK_TYPES, check_event_types, webhook_type_of
from infra.webhook_http import sign, signed_headers
from infra.webhook_targets import is_public, split_url
from infra.webhook_vault import new_secret
from tests.unit.factories import T0, assert_rebuilds_identically, assert_refused, event_names

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def endpoint(**overrides: object) -> WebhookEndpoint:
    fields: dict[str, object] = {
        "endpoint_id": uuid4(),
        "url": "https://hooks.example.com/ledger",
        "event_types": ["invoice.paid"],
        "description": None,
        "secret_id": uuid4(),
        "secret_fingerprint": "sha256:0123456789abcdef",
        "occurred_at": T0,
        **overrides,
    }
    return WebhookEndpoint.create(**fields)  # type: ignore[arg-type]


# ---------------------------------------------------------------- types


def test_every_ledger_event_announces_a_type_of_the_catalogue() -> None:
    assert set(LEDGER_EVENT_TYPES.values()) <= set(WEBHOOK_TYPES)
    announced = set(LEDGER_EVENT_TYPES.values())
    assert announced == set(WEBHOOK_TYPES), "each type of SPEC section 8 is announced by some event"


def test_events_outside_the_catalogue_announce_nothing() -> None:
    for internal in ("Invoice.LineAdded", "Payment.Initiated", "UsageRecord.Recorded", "ClockTick.Ticked"):
        assert webhook_type_of(internal) is None


def test_unknown_repeated_or_no_event_types_are_refused_naming_the_field() -> None:
    for wrong in ([], ["invoice.exploded"], ["invoice.paid", "invoice.paid"]):
        with pytest.raises(InvalidValue) as refused:
            check_event_types(wrong)
        assert refused.value.field == "event_types"
    assert check_event_types(["*"]) == ["*"]


# ---------------------------------------------------------------- the endpoint


def test_an_endpoint_rotates_disables_and_deletes_as_events_that_rebuild_it() -> None:
    hook = endpoint()
    first_secret = hook.secret_id
    new_id = uuid4()
    hook.rotate_secret(
        secret_id=new_id,
        secret_fingerprint="sha256:fedcba9876543210",
        previous_valid_until=NOW + timedelta(hours=24),
        occurred_at=T0,
    )
    assert (hook.secret_id, hook.previous_secret_id) == (new_id, first_secret)
    hook.disable(reason="answered 410 Gone", occurred_at=T0)
    assert hook.status == DISABLED
    hook.delete(occurred_at=T0)
    assert hook.status == DELETED
    copy = assert_rebuilds_identically(hook)
    assert copy.previous_secret_valid_until == NOW + timedelta(hours=24)


def test_a_disabled_endpoint_is_not_disabled_again_and_a_deleted_one_is_gone() -> None:
    hook = endpoint()
    assert hook.status == ENABLED
    hook.disable(reason="gone", occurred_at=T0)
    assert_refused(hook, WebhookEndpointDisabled, lambda: hook.disable(reason="again", occurred_at=T0))
    hook.delete(occurred_at=T0)
    assert event_names(hook) == ["Deleted"]
    assert_refused(hook, NotFound, lambda: hook.delete(occurred_at=T0))


def test_a_long_description_is_refused() -> None:
    with pytest.raises(InvalidValue) as refused:
        endpoint(description="x" * 501)
    assert refused.value.field == "description"


# ---------------------------------------------------------------- the schedule


def test_failures_are_retried_after_5s_5min_30min_2h_5h_10h_14h_20h_24h_then_given_up() -> None:
    expected = [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]
    assert [d.total_seconds() for d in RETRY_DELAYS] == expected
    failures = 0
    for seconds in expected:
        verdict = judge(500, None, failures_before=failures, now=NOW, jitter=0.0)
        assert verdict == (verdict.__class__(RETRY, NOW + timedelta(seconds=seconds)))
        failures += 1
    assert failures + 1 == MAX_ATTEMPTS == 10
    assert judge(500, None, failures_before=failures, now=NOW, jitter=0.0).outcome == FAILED


def test_jitter_spreads_each_delay_by_at_most_ten_percent_either_way() -> None:
    for failures, delay in enumerate(RETRY_DELAYS, start=1):
        assert retry_delay(failures, -1.0) == delay * 0.9
        assert retry_delay(failures, 1.0) == delay * 1.1


def test_only_2xx_succeeds_410_is_gone_and_no_answer_is_retried() -> None:
    assert judge(200, None, failures_before=3, now=NOW, jitter=0).outcome == SUCCEEDED
    assert judge(204, None, failures_before=0, now=NOW, jitter=0).outcome == SUCCEEDED
    assert judge(410, None, failures_before=0, now=NOW, jitter=0).outcome == GONE
    for status in (None, 301, 400, 404, 500, 502):
        assert judge(status, None, failures_before=0, now=NOW, jitter=0).outcome == RETRY


def test_429_and_503_wait_as_long_as_retry_after_asks_in_seconds_or_as_a_date() -> None:
    verdict = judge(429, "120", failures_before=0, now=NOW, jitter=0)
    assert verdict.next_attempt_at == NOW + timedelta(seconds=120)
    verdict = judge(503, "Sun, 01 Mar 2026 14:30:00 GMT", failures_before=0, now=NOW, jitter=0)
    assert verdict.next_attempt_at == datetime(2026, 3, 1, 14, 30, tzinfo=UTC)
    # Another status's Retry-After is not the receiver asking to be spared: the schedule applies.
    assert judge(500, "120", failures_before=0, now=NOW, jitter=0).next_attempt_at == NOW + timedelta(
        seconds=5
    )


def test_retry_after_is_bounded_and_unreadable_ones_leave_the_schedule() -> None:
    assert retry_after("999999999999", NOW) == timedelta(hours=24)
    assert retry_after("Sun, 01 Mar 2026 11:00:00 GMT", NOW) == timedelta(0)  # in the past: now
    for unreadable in (None, "", "soon", "-5", "1.5"):
        assert retry_after(unreadable, NOW) is None
    assert judge(429, "soon", failures_before=1, now=NOW, jitter=0).next_attempt_at == NOW + timedelta(
        minutes=5
    )


# ---------------------------------------------------------------- where it may post


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.254",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "::",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "64:ff9b::a00:1",
    ],
)
def test_loopback_private_link_local_and_reserved_addresses_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_global_addresses_are_public(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


def test_urls_without_http_a_host_or_with_credentials_are_refused_naming_url() -> None:
    for wrong in (
        "ftp://example.com/x",
        "example.com/hook",
        "https:///path",
        "https://user:pw@example.com/x",
        "https://example.com/x#frag",
        "https://exa mple.com/",
        "https://example.com:99999/",
    ):
        with pytest.raises(InvalidValue) as refused:
            split_url(wrong)
        assert refused.value.field == "url", wrong
    assert split_url("https://example.com/hook?x=1") == ("example.com", 443)
    assert split_url("http://[2606:4700::1]:8080/") == ("2606:4700::1", 8080)


# ---------------------------------------------------------------- signatures


def test_signatures_are_those_the_reference_library_makes_and_verifies() -> None:
    secret = new_secret(uuid4())
    body = b'{"type":"invoice.paid","timestamp":"2026-03-01T12:00:00Z","data":{}}'
    stamp = int(datetime.now(UTC).timestamp())
    reference = Webhook(secret.whsec)
    assert sign(secret.value, "msg_1", stamp, body) == reference.sign(
        "msg_1", datetime.fromtimestamp(stamp, UTC), body.decode()
    )
    other = new_secret(uuid4())
    headers = signed_headers([other.value, secret.value], "msg_1", stamp, body)
    assert reference.verify(body, headers) == {
        "type": "invoice.paid",
        "timestamp": "2026-03-01T12:00:00Z",
        "data": {},
    }
    assert headers["webhook-signature"].count("v1,") == 2


def test_a_secret_is_whsec_and_base64_of_32_random_bytes_and_its_fingerprint_reveals_nothing_of_it() -> None:
    secret = new_secret(uuid4())
    assert secret.whsec.startswith("whsec_") and len(secret.value) == 32
    assert secret.fingerprint.startswith("sha256:") and secret.whsec[6:] not in secret.fingerprint
