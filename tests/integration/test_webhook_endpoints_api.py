"""The webhook endpoints API: the secret is shown once and kept out of the log, endpoint changes are
events, private targets are refused unless allowed, bad input is a 4xx naming the field and
records nothing, and `ledger up`'s background workers deliver on their own."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from application import commands as c
from application.webhook_dispatch import WebhookDispatcher
from application.webhooks import CreateWebhookEndpoint, WebhookEndpoints
from infra.bootstrap import Container, bootstrap
from infra.settings import Settings
from infra.webhook_vault import SecretVault, VaultKeyMismatch
from tests.conftest import bearer, count_events
from tests.integration.webhook_helpers import Hooks
from tests.integration.webhook_receiver import Receiver

PUBLIC_TARGET = "https://93.184.215.14/ledger-hooks"  # a literal global address: no DNS needed


def create(client: TestClient, headers: dict[str, str], **body: Any) -> Any:
    return client.post(
        "/v1/webhook-endpoints", json={"url": PUBLIC_TARGET, "event_types": ["*"], **body}, headers=headers
    )


def test_an_endpoint_answers_its_secret_once_and_reads_never_show_it(hooks: Hooks) -> None:
    answer = create(
        hooks.client, hooks.admin, event_types=["invoice.paid", "payment.failed"], description="ERP"
    )
    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert created["secret"].startswith("whsec_") and len(base64.b64decode(created["secret"][6:])) == 32
    assert (created["url"], created["event_types"], created["status"]) == (
        PUBLIC_TARGET,
        ["invoice.paid", "payment.failed"],
        "enabled",
    )
    assert "secret_id" not in created

    shown = hooks.client.get(
        f"/v1/webhook-endpoints/{created['id']}",
        params={"min_position": created["position"]},
        headers=hooks.admin,
    )
    # The fan-out applies endpoint events; the read waits for it, bounded, and it is not running yet.
    assert shown.status_code == 503
    hooks.fanout.catch_up()
    shown = hooks.client.get(
        f"/v1/webhook-endpoints/{created['id']}",
        params={"min_position": created["position"]},
        headers=hooks.admin,
    )
    assert shown.status_code == 200
    assert "secret" not in shown.json()
    assert shown.json()["secret_fingerprint"] == created["secret_fingerprint"]
    listed = hooks.client.get("/v1/webhook-endpoints", headers=hooks.admin).json()
    assert [e["id"] for e in listed["data"]] == [created["id"]]
    assert "secret" not in listed["data"][0]


def test_no_secret_is_in_the_log_and_the_database_holds_it_only_encrypted(hooks: Hooks) -> None:
    created = create(hooks.client, hooks.admin, description="audited").json()
    rotated = hooks.client.post(f"/v1/webhook-endpoints/{created['id']}/rotate-secret", headers=hooks.admin)
    secrets = [created["secret"], rotated.json()["secret"]]
    hooks.fanout.catch_up()
    schema = hooks.container.settings.database_schema
    with hooks.container.pool.connection() as conn:
        tables: Any = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchall()
        dump = "\n".join(
            str(row)
            for table in tables
            for row in conn.execute(f'SELECT t::text FROM "{table["table_name"]}" t').fetchall()
        )
        vault: Any = conn.execute("SELECT ciphertext FROM webhook_secrets").fetchall()
    assert "WebhookEndpoint.SecretRotated" in dump and created["secret_fingerprint"] in dump
    for secret in secrets:
        raw = base64.b64decode(secret[6:])
        assert secret[6:] not in dump and raw.hex() not in dump
        assert all(raw not in bytes(row["ciphertext"]) for row in vault)


def test_the_same_idempotency_key_records_one_endpoint_and_answers_the_same_secret(hooks: Hooks) -> None:
    headers = {**hooks.admin, "Idempotency-Key": "erp-hook-1"}
    first = create(hooks.client, headers)
    events = count_events(hooks.container)
    again = create(hooks.client, headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert count_events(hooks.container) == events
    other = create(hooks.client, headers, description="another body")
    assert other.status_code == 422


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hooks",
        "http://localhost/hooks",
        "http://[::1]/hooks",
        "http://10.0.0.5/hooks",
        "http://172.16.3.4/hooks",
        "http://192.168.0.10/hooks",
        "http://169.254.169.254/latest/meta-data",
        "http://[fe80::1]/hooks",
        "http://[fd00::1]/hooks",
        "http://[::ffff:127.0.0.1]/hooks",
    ],
)
def test_loopback_and_private_targets_are_refused_naming_url_and_record_nothing(
    client: TestClient, admin: dict[str, str], container: Container, url: str
) -> None:
    before = count_events(container)
    answer = create(client, admin, url=url)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in answer.json()["errors"]] == ["url"]
    assert count_events(container) == before


def test_a_public_target_is_accepted_where_private_ones_are_refused(
    client: TestClient, admin: dict[str, str]
) -> None:
    assert create(client, admin).status_code == 201


def test_private_targets_are_accepted_when_allowed(hooks: Hooks, receiver: Receiver) -> None:
    assert hooks.container.settings.webhooks_allow_private
    assert create(hooks.client, hooks.admin, url=receiver.url).status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"event_types": ["invoice.exploded"]}, "event_types"),
        ({"event_types": []}, "event_types"),
        ({"event_types": ["invoice.paid", "invoice.paid"]}, "event_types"),
        ({"url": "ftp://93.184.215.14/x"}, "url"),
        ({"url": "https://user:password@93.184.215.14/x"}, "url"),
        ({"url": "https://no-such-host.invalid/x"}, "url"),
        ({"description": "x" * 501}, "description"),
        ({"secret": "whsec_mine"}, "secret"),
    ],
)
def test_bad_endpoints_are_422_naming_the_field_and_record_nothing(
    client: TestClient, admin: dict[str, str], container: Container, body: dict[str, Any], field: str
) -> None:
    before = count_events(container)
    answer = create(client, admin, **body)
    assert answer.status_code == 422, answer.text
    assert field in [e["field"].split(".")[0] for e in answer.json()["errors"]]
    assert count_events(container) == before


def test_endpoints_page_with_a_cursor_and_a_deleted_one_is_gone_everywhere(hooks: Hooks) -> None:
    ids = [create(hooks.client, hooks.admin, description=f"n{i}").json()["id"] for i in range(3)]
    hooks.fanout.catch_up()
    first = hooks.client.get("/v1/webhook-endpoints", params={"limit": 2}, headers=hooks.admin).json()
    second = hooks.client.get(
        "/v1/webhook-endpoints", params={"limit": 2, "cursor": first["next_cursor"]}, headers=hooks.admin
    ).json()
    assert [e["id"] for e in first["data"] + second["data"]] == ids and second["next_cursor"] is None

    deleted = hooks.client.delete(f"/v1/webhook-endpoints/{ids[0]}", headers=hooks.admin)
    assert deleted.status_code == 200 and deleted.json()["status"] == "deleted"
    hooks.fanout.catch_up()
    for method, path in [
        ("GET", f"/v1/webhook-endpoints/{ids[0]}"),
        ("GET", f"/v1/webhook-endpoints/{ids[0]}/deliveries"),
        ("DELETE", f"/v1/webhook-endpoints/{ids[0]}"),
        ("POST", f"/v1/webhook-endpoints/{ids[0]}/rotate-secret"),
        ("GET", f"/v1/webhook-endpoints/{uuid4()}"),
    ]:
        assert hooks.client.request(method, path, headers=hooks.admin).status_code == 404, path
    listed = hooks.client.get("/v1/webhook-endpoints", headers=hooks.admin).json()
    assert [e["id"] for e in listed["data"]] == ids[1:]
    with hooks.container.pool.connection() as conn:
        kept: Any = conn.execute(
            "SELECT count(*) AS n FROM webhook_secrets WHERE endpoint_id = %s", (ids[0],)
        )
        assert kept.fetchone()["n"] == 0, "a deleted endpoint's secrets are destroyed"


def test_only_admin_keys_see_or_change_webhooks(hooks: Hooks) -> None:
    _, raw = hooks.container.keys.mint(role="read", name="finance")
    reader = bearer(raw)
    assert create(hooks.client, reader).status_code == 403
    assert hooks.client.get("/v1/webhook-endpoints", headers=reader).status_code == 403
    assert hooks.client.get("/v1/webhook-endpoints").status_code == 401


def test_a_process_with_another_webhook_key_refuses_to_use_the_secrets_and_loses_nothing(
    hooks: Hooks, receiver: Receiver
) -> None:
    created = hooks.create_endpoint(receiver.url, ["customer.created"])
    receiver.secrets.append(created["secret"])
    endpoints = hooks.container.webhooks
    assert endpoints is not None
    stranger_vault = SecretVault(hooks.container.pool, lambda: bytes(32))
    stranger = WebhookEndpoints(hooks.container.ledger, stranger_vault, allow_private=True)
    ctx = c.CommandContext(occurred_at=hooks.container.ledger.now())
    with pytest.raises(VaultKeyMismatch):
        stranger.create(CreateWebhookEndpoint(receiver.url, ["*"]), ctx)

    hooks.container.ledger.register_customer(c.RegisterCustomer("acme", "a@acme.io", "EUR"), ctx)
    hooks.fanout.catch_up()
    mismatched = WebhookDispatcher(
        hooks.container.pool, stranger_vault, stranger, allow_private=True, clock=hooks.clock
    )
    assert mismatched.deliver_due() == 1
    assert receiver.received == []
    hooks.clock.advance(minutes=2)
    hooks.deliver()  # a process with the right key
    assert len(receiver.delivered()) == 1
    (delivery,) = hooks.deliveries(created["id"])
    assert [a["outcome"] for a in delivery["attempts"]] == ["not_sent", "succeeded"]
    assert "another LEDGER_WEBHOOKS_SECRETS_KEY" in delivery["attempts"][0]["error"]


@pytest.fixture
def running(settings: Settings, database_url: str) -> Iterator[tuple[Container, TestClient]]:
    """The ledger as `ledger up` runs it: fan-out and dispatcher in the background, on the wall clock."""
    built = bootstrap(
        settings.model_copy(
            update={
                "webhooks_allow_private": True,
                "webhooks_secrets_key": SecretStr(base64.b64encode(b"k" * 32).decode()),
            }
        ),
        database_url,
        run_projection=True,
        run_policies=True,
    )
    try:
        with TestClient(create_app(lambda: built), raise_server_exceptions=False) as client:
            yield built, client
    finally:
        built.close()


def test_the_background_workers_deliver_a_write_on_their_own(
    running: tuple[Container, TestClient], receiver: Receiver
) -> None:
    container, client = running
    _, raw = container.keys.mint(role="admin", name="tests")
    admin = bearer(raw)
    created = client.post(
        "/v1/webhook-endpoints",
        json={"url": receiver.url, "event_types": ["customer.created"]},
        headers=admin,
    ).json()
    receiver.secrets.append(created["secret"])
    written = client.post(
        "/v1/customers", json={"external_id": "acme", "email": "a@acme.io", "currency": "EUR"}, headers=admin
    )
    assert written.status_code == 201
    deadline = time.monotonic() + 30  # a bound on waiting for the outcome, not a measured time
    while not receiver.delivered() and time.monotonic() < deadline:
        time.sleep(0.02)
    (delivered,) = receiver.delivered()
    assert delivered.verified_by == (created["secret"],)
    assert delivered.message["data"]["position"] == written.json()["position"]
    deliveries = client.get(
        f"/v1/webhook-endpoints/{created['id']}/deliveries",
        params={"min_position": written.json()["position"]},
        headers=admin,
    ).json()["data"]
    assert [d["webhook_id"] for d in deliveries] == [delivered.webhook_id]
