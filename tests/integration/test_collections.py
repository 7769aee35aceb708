"""Collections (SPEC 8) end to end: the ledger collects its invoices through a payment backend
(a real HTTP server following seed 004's contract, calling the ledger back over the network),
retries on the scheduled days after a failure, reminds a customer who was sent an invoice, takes
the final action, and refuses callbacks it cannot trust. Business time moves with the test clock;
the policies and the collector are run to the end of their work on demand."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from application.webhook_dispatch import WebhookDispatcher
from infra.bootstrap import CORE_PROJECTION
from infra.mail.transport import SmtpTransport
from infra.settings import Settings
from projections.collector import Collector
from projections.documents import seller_party
from projections.mailer import Mailer
from projections.policies import Policies
from projections.webhook_fanout import WebhookFanout
from tests.conftest import count_events
from tests.integration.integration_helpers import Api, running_ledger
from tests.integration.live_server import live_server
from tests.integration.payment_backend import FakePaymentBackend, post_signed
from tests.integration.smtp_server import SmtpServer
from tests.integration.webhook_helpers import MovableClock, dispatcher_for
from tests.integration.webhook_receiver import Receiver

KEY = "backend-key-for-tests"


@dataclass
class Collecting:
    api: Api
    backend: FakePaymentBackend
    collector: Collector
    url: str
    fanout: WebhookFanout
    dispatcher: WebhookDispatcher
    mailer: Mailer
    smtp: SmtpServer

    def deliver_webhooks(self) -> None:
        self.fanout.catch_up()
        while self.dispatcher.deliver_due():
            pass

    def settle(self) -> None:
        """Read models, policies and collector, each to the end of its work, until none has any."""
        for _ in range(4):
            self.api.run_policies()
            if not self.collector.run_once(poll=False):
                break
        self.api.run_policies()

    def invoice(self, customer: str) -> dict[str, Any]:
        rows = self.api.get("/v1/invoices", customer_id=customer)["data"]
        return next(i for i in rows if i["billing_reason"] == "subscription_create")

    def payments(self, invoice_id: str) -> list[dict[str, Any]]:
        rows = self.api.get("/v1/payments", limit=500)["data"]
        return sorted((p for p in rows if p["invoice_id"] == invoice_id), key=lambda p: p["attempt"])


@pytest.fixture
def backend() -> Iterator[FakePaymentBackend]:
    server = FakePaymentBackend(KEY).start()
    yield server
    server.stop()


@pytest.fixture
def collecting(
    settings: Settings, database_url: str, backend: FakePaymentBackend, smtp_server: SmtpServer
) -> Iterator[Collecting]:
    with running_ledger(
        settings,
        database_url,
        payment_backend_url=backend.url,
        payment_backend_api_key=SecretStr(KEY),
        payment_backend_timeout_seconds=1.0,
        webhooks_allow_private=True,
    ) as api:
        container = api.container
        assert container.payment_backend is not None
        api.policies = Policies(container.pool, container.ledger, CORE_PROJECTION, collect=True)
        with live_server(container) as url:
            collector = Collector(
                container.pool,
                container.ledger,
                container.payment_backend,
                callback_url=f"{url}/v1/payments/callback",
                poll_seconds=3600,
            )
            clock = MovableClock()
            fanout = WebhookFanout(container.pool, container.ledger, clock=clock)
            mailer = Mailer(
                container.pool,
                container.ledger,
                SmtpTransport(smtp_server.url),
                seller_party(container.settings),
            )
            yield Collecting(
                api, backend, collector, url, fanout, dispatcher_for(container, clock), mailer, smtp_server
            )


def subscribe(api: Api, collection_method: str) -> tuple[str, str]:
    api.post(
        "/v1/plans", {"code": "pro", "name": "Pro", "currency": "EUR", "amount": 2500, "interval": "month"}
    )
    customer = api.post(
        "/v1/customers",
        {
            "external_id": "acme",
            "email": "billing@acme.io",
            "currency": "EUR",
            "tax_rate_bps": 2000,
            "net_terms_days": 14,
            "collection_method": collection_method,
        },
    )["id"]
    sub = api.post("/v1/subscriptions", {"customer_id": customer, "plan_code": "pro"})["id"]
    return customer, sub


def test_an_automatic_invoice_failing_twice_is_paid_on_the_scheduled_retry_and_dunning_stops(
    collecting: Collecting, receiver: Receiver
) -> None:
    api, backend = collecting.api, collecting.backend
    types = ["invoice.finalized", "payment.failed", "payment.succeeded", "invoice.paid", "dunning.step"]
    endpoint = api.post("/v1/webhook-endpoints", {"url": receiver.url, "event_types": types})
    receiver.secrets.append(endpoint["secret"])
    customer, _ = subscribe(api, "charge_automatically")
    api.advance(api.now() + timedelta(minutes=61))  # the grace hour is over: finalized
    collecting.settle()
    invoice = collecting.invoice(customer)
    assert invoice["status"] == "open" and invoice["collection_method"] == "charge_automatically"
    (first,) = backend.made_for(invoice["id"])
    assert (first.request["amount"], first.request["currency"]) == (invoice["amount_remaining"], "EUR")
    assert first.request["customer_id"] == customer

    # The first attempt fails, said by the backend's callback over the network.
    failed_at = api.now()
    assert backend.call_back(first.external_payment_id, "failed").status_code == 200
    collecting.settle()
    dunning = collecting.invoice(customer)["dunning"]
    assert (dunning["state"], dunning["attempts"]) == ("retrying", 1)
    assert datetime.fromisoformat(dunning["next_action_at"]) == failed_at + timedelta(days=1)
    assert collecting.api.alerts("payment_failed", status="open")

    # Day 1: the second attempt, which the backend fails at once.
    backend.script.append("failed")
    api.advance(failed_at + timedelta(days=1))
    collecting.settle()
    assert len(backend.made_for(invoice["id"])) == 2
    dunning = collecting.invoice(customer)["dunning"]
    assert (dunning["attempts"], dunning["steps_taken"]) == (2, 1)
    assert datetime.fromisoformat(dunning["next_action_at"]) == failed_at + timedelta(days=3)

    # Day 3: the third attempt stays pending; its status, polled, says it succeeded.
    api.advance(failed_at + timedelta(days=3))
    collecting.settle()
    third = backend.made_for(invoice["id"])[2]
    backend.settle(third.external_payment_id, "succeeded")
    assert collecting.collector.run_once(poll=True) == 1
    collecting.settle()

    paid = collecting.invoice(customer)
    assert (paid["status"], paid["amount_remaining"]) == ("paid", 0)
    assert paid["dunning"]["state"] == "stopped" and paid["dunning"]["next_action_at"] is None
    payments = collecting.payments(invoice["id"])
    assert [(p["attempt"], p["status"], p["method"]) for p in payments] == [
        (1, "failed", "backend"),
        (2, "failed", "backend"),
        (3, "succeeded", "backend"),
    ]
    made = [datetime.fromisoformat(p["created_at"]) for p in payments[1:]]
    assert made == [failed_at + timedelta(days=1), failed_at + timedelta(days=3)]
    assert collecting.api.alerts("payment_failed", status="open") == []
    # Nothing more falls due: no fourth attempt on day 5.
    api.advance(failed_at + timedelta(days=6))
    collecting.settle()
    assert len(backend.made_for(invoice["id"])) == 3

    # Subscribers heard it all, each message verified by the standardwebhooks library.
    collecting.deliver_webhooks()
    assert all(r.verified_by == (endpoint["secret"],) for r in receiver.received)
    in_log_order = sorted(receiver.received, key=lambda r: int(r.message["data"]["position"]))
    about_invoice = [
        (r.type, r.message["data"].get("action"))
        for r in in_log_order
        if invoice["id"] in (r.message["data"].get("id"), r.message["data"].get("invoice_id"))
    ]
    assert about_invoice == [
        ("invoice.finalized", None),
        ("payment.failed", None),
        ("dunning.step", "retry"),
        ("payment.failed", None),
        ("dunning.step", "retry"),
        ("payment.succeeded", None),
        ("invoice.paid", None),
    ]
    # And the customer got its mail: the invoice, two failures, one receipt; each once.
    collecting.mailer.catch_up()
    collecting.mailer.catch_up()
    subjects = [m["Subject"].split(":")[0].split(" ")[0] for m in collecting.smtp.messages()]
    assert sorted(subjects) == ["Invoice", "Payment", "Payment", "Payment"]
    receipts = [m for m in collecting.smtp.messages() if m["Subject"].startswith("Payment received")]
    assert len(receipts) == 1 and receipts[0]["To"] == "billing@acme.io"


def test_a_sent_invoice_never_paid_is_reminded_on_the_configured_days_then_its_subscription_ends(
    collecting: Collecting,
) -> None:
    api = collecting.api
    customer, sub = subscribe(api, "send_invoice")
    api.advance(api.now() + timedelta(minutes=61))
    invoice = collecting.invoice(customer)
    due = datetime.combine(date.fromisoformat(invoice["due_date"]), time(), tzinfo=UTC)
    assert invoice["dunning"]["state"] == "reminding"
    assert datetime.fromisoformat(invoice["dunning"]["next_action_at"]) == due - timedelta(days=3)
    api.advance(due + timedelta(days=15))
    collecting.settle()

    history = api.get(f"/v1/audit/streams/{invoice['id']}", headers=api.key("audit"))["events"]
    steps = [
        (e["payload"]["action"], datetime.fromisoformat(e["occurred_at"]))
        for e in history
        if e["type"] == "Invoice.DunningStepTaken"
    ]
    assert steps == [
        ("reminder", due - timedelta(days=3)),
        ("reminder", due + timedelta(days=1)),
        ("reminder", due + timedelta(days=7)),
        ("reminder", due + timedelta(days=14)),
        ("final", due + timedelta(days=14)),
    ]
    assert collecting.invoice(customer)["dunning"]["state"] == "exhausted"
    ended = api.get(f"/v1/subscriptions/{sub}")
    assert ended["status"] == "canceled"
    assert datetime.fromisoformat(ended["ended_at"]) == due + timedelta(days=14)
    assert collecting.backend.payments == {}  # a sent invoice is never charged
    collecting.mailer.catch_up()
    about_it = [m["Subject"] for m in collecting.smtp.messages() if invoice["number"] in m["Subject"]]
    assert [subject.split(":")[0] for subject in about_it] == [
        f"Invoice {invoice['number']} from Billing Ledger",
        "Reminder",
        "Reminder",
        "Reminder",
        "Reminder",
        "Final notice",
    ]


def test_a_backend_that_is_down_or_slow_loses_no_attempt_and_makes_no_second_one(
    collecting: Collecting,
) -> None:
    api, backend = collecting.api, collecting.backend
    customer, _ = subscribe(api, "charge_automatically")
    backend.down = True
    api.advance(api.now() + timedelta(minutes=61))
    collecting.settle()
    invoice = collecting.invoice(customer)
    (waiting,) = collecting.payments(invoice["id"])
    assert (waiting["status"], waiting["external_payment_id"]) == ("pending", None)

    backend.down, backend.delay_seconds = False, 1.5  # answers after the ledger stopped waiting
    collecting.settle()
    assert collecting.payments(invoice["id"])[0]["external_payment_id"] is None
    backend.delay_seconds = 0
    collecting.settle()
    (submitted,) = collecting.payments(invoice["id"])
    (made,) = backend.made_for(invoice["id"])  # asked twice, under one idempotency key: one payment
    assert backend.initiate_calls >= 2
    assert submitted["external_payment_id"] == made.external_payment_id
    assert submitted["payment_url"] == f"https://pay.example/{made.external_payment_id}"


def test_callbacks_the_ledger_cannot_trust_or_place_are_refused_and_record_nothing(
    collecting: Collecting,
) -> None:
    api, backend = collecting.api, collecting.backend
    customer, _ = subscribe(api, "charge_automatically")
    api.advance(api.now() + timedelta(minutes=61))
    collecting.settle()
    (payment,) = backend.made_for(collecting.invoice(customer)["id"])
    url = f"{collecting.url}/v1/payments/callback"
    before = count_events(api.container)

    body = (
        b'{"event_id": "evt_1", "external_payment_id": "%s", "status": "succeeded",'
        b' "amount": %d, "currency": "EUR"}'
        % (payment.external_payment_id.encode(), payment.request["amount"])
    )
    unsigned = api.client.post(
        "/v1/payments/callback", content=body, headers={"Content-Type": "application/json"}
    )
    assert unsigned.status_code == 401
    assert unsigned.headers["content-type"].startswith("application/problem+json")
    assert post_signed(url, body, "another-key").status_code == 401
    signature = post_signed(url, b"{}", KEY).request.headers["X-Signature"]  # of other bytes
    tampered = api.client.post(
        "/v1/payments/callback",
        content=body,
        headers={"Content-Type": "application/json", "X-Signature": signature},
    )
    assert tampered.status_code == 401
    unknown = body.replace(payment.external_payment_id.encode(), b"pay_unknown")
    assert post_signed(url, unknown, KEY).status_code == 404
    wrong_amount = body.replace(b'"amount": %d' % payment.request["amount"], b'"amount": 1')
    assert post_signed(url, wrong_amount, KEY).status_code == 422
    not_json = post_signed(url, b"{not json", KEY)
    assert not_json.status_code == 400  # malformed JSON, as everywhere in the API
    assert not_json.headers["content-type"].startswith("application/problem+json")
    assert count_events(api.container) == before

    good = post_signed(url, body, KEY)
    assert good.status_code == 200 and good.json()["status"] == "succeeded"
    after_good = count_events(api.container)
    assert after_good > before
    again = post_signed(url, body, KEY)  # the same callback again: the same answer, nothing new
    assert again.status_code == 200 and count_events(api.container) == after_good
    collecting.settle()
    assert collecting.invoice(customer)["status"] == "paid"


def test_a_payment_pending_at_the_backend_is_canceled_there_when_its_invoice_is_paid_by_hand(
    collecting: Collecting,
) -> None:
    api, backend = collecting.api, collecting.backend
    customer, _ = subscribe(api, "charge_automatically")
    api.advance(api.now() + timedelta(minutes=61))
    collecting.settle()
    invoice = collecting.invoice(customer)
    (pending,) = backend.made_for(invoice["id"])
    manual = api.post(
        "/v1/payments",
        {
            "customer_id": customer,
            "invoice_id": invoice["id"],
            "amount": invoice["amount_remaining"],
            "currency": "EUR",
        },
    )
    api.post(f"/v1/payments/{manual['id']}/succeed", {}, 200)
    collecting.settle()
    assert backend.payments[pending.external_payment_id].status == "canceled"
    statuses = sorted(p["status"] for p in collecting.payments(invoice["id"]))
    assert statuses == ["canceled", "succeeded"]
