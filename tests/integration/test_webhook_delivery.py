"""Outgoing webhooks end to end (SPEC section 8): events recorded by the ledger reach a real
receiver on a local port, signed as the `standardwebhooks` reference library verifies; failures
are retried on the wall-clock schedule (a clock the test moves, never a sleep), 410 disables the
endpoint, Retry-After is honoured, and a restart loses and duplicates nothing."""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

from application import commands as c
from domain import ids
from tests.integration.webhook_helpers import Hooks
from tests.integration.webhook_receiver import HANG, Receiver


def ctx(hooks: Hooks) -> c.CommandContext:
    return c.CommandContext(occurred_at=hooks.container.ledger.now(), actor="tests")


def register(hooks: Hooks, external_id: str) -> UUID:
    outcome = hooks.container.ledger.register_customer(
        c.RegisterCustomer(external_id, f"{external_id}@example.com", "EUR"), ctx(hooks)
    )
    return outcome.resource_id


def subscribed(hooks: Hooks, receiver: Receiver, event_types: list[str] | None = None) -> dict[str, Any]:
    created = hooks.create_endpoint(receiver.url, event_types)
    receiver.secrets.append(created["secret"])
    return created


def by_type(receiver: Receiver) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for received in receiver.delivered():
        found.setdefault(received.type, []).append(received.message)
    return found


def write_a_billing_history(hooks: Hooks) -> dict[str, UUID]:
    """Every kind of change the ledger records today that a webhook announces."""
    ledger = hooks.container.ledger
    ledger.define_plan(c.DefinePlan("pro", "Pro", "EUR", 2000, "month"), ctx(hooks))
    customer = register(hooks, "acme")
    ledger.update_customer(c.UpdateCustomer(customer, name="Acme GmbH"), ctx(hooks))
    sub = ledger.start_subscription(c.StartSubscription(customer, "pro"), ctx(hooks)).resource_id
    ledger.change_subscription(c.ChangeSubscription(sub, quantity=3), ctx(hooks))
    invoices = []
    for amount in (6000, 1000, 500):
        drafted = ledger.draft_invoice(
            c.DraftInvoice(customer, "EUR", [c.InvoiceLine("seats", 1, amount)]), ctx(hooks)
        ).resource_id
        ledger.finalize_invoice(c.FinalizeInvoice(drafted, date(2099, 1, 1)), ctx(hooks))
        invoices.append(drafted)
    paid, voided, written_off = invoices
    payment = ledger.initiate_payment(c.InitiatePayment(customer, 6000, "EUR", paid), ctx(hooks)).resource_id
    ledger.fail_payment(c.FailPayment(payment, "card_declined", "insufficient funds"), ctx(hooks))
    alert = ids.alert_id("payment_failed", f"invoice:{paid}")
    ledger.raise_alert(
        c.RaiseAlert(alert, "payment_failed", "critical", f"invoice:{paid}", "card declined", customer),
        ctx(hooks),
    )
    ledger.retry_payment(c.RetryPayment(payment), ctx(hooks))
    ledger.succeed_payment(c.SucceedPayment(payment), ctx(hooks))
    ledger.resolve_alert(c.ResolveAlert(alert, "paid on retry"), ctx(hooks))
    ledger.refund_payment(c.RefundPayment(payment, 1000), ctx(hooks))
    ledger.void_invoice(c.VoidInvoice(voided), ctx(hooks))
    ledger.mark_invoice_uncollectible(c.MarkInvoiceUncollectible(written_off), ctx(hooks))
    ledger.cancel_subscription(c.CancelSubscription(sub, at_period_end=False), ctx(hooks))
    return {"customer": customer, "subscription": sub, "paid": paid, "payment": payment, "alert": alert}


TODAYS_TYPES = {
    "customer.created",
    "customer.updated",
    "subscription.created",
    "subscription.updated",
    "subscription.canceled",
    "invoice.created",
    "invoice.finalized",
    "invoice.paid",
    "invoice.voided",
    "invoice.marked_uncollectible",
    "payment.succeeded",
    "payment.failed",
    "payment.refunded",
    "alert.raised",
    "alert.resolved",
}


def test_every_type_arrives_signed_as_the_standardwebhooks_library_verifies(
    hooks: Hooks, receiver: Receiver
) -> None:
    endpoint = subscribed(hooks, receiver)
    made = write_a_billing_history(hooks)
    hooks.deliver()

    received = receiver.delivered()
    assert received, "nothing arrived"
    assert {r.type for r in received} == TODAYS_TYPES
    for one in received:
        assert one.verified_by == (endpoint["secret"],), f"{one.type} did not verify"
        assert set(one.message) == {"type", "timestamp", "data"}
    assert len({r.webhook_id for r in received}) == len(received), "one webhook-id per event"

    messages = by_type(receiver)
    customer = messages["customer.created"][0]["data"]
    assert (customer["id"], customer["external_id"]) == (str(made["customer"]), "acme")
    assert messages["customer.updated"][0]["data"]["name"] == "Acme GmbH"
    # The resource as the write that recorded the event left it: a drafted invoice with its lines.
    drafted = next(m["data"] for m in messages["invoice.created"] if m["data"]["id"] == str(made["paid"]))
    assert (drafted["status"], drafted["subtotal"], len(drafted["lines"])) == ("draft", 6000, 1)
    paid = messages["invoice.paid"][0]["data"]
    assert (paid["id"], paid["status"], paid["amount_remaining"]) == (str(made["paid"]), "paid", 0)
    failed = messages["payment.failed"][0]["data"]
    assert (failed["status"], failed["failure_code"]) == ("failed", "card_declined")
    assert messages["payment.refunded"][0]["data"]["amount_refunded"] == 1000
    assert messages["alert.raised"][0]["data"]["type"] == "payment_failed"
    assert messages["subscription.canceled"][0]["data"]["status"] == "canceled"
    with hooks.container.pool.connection() as conn:
        positions: Any = conn.execute(
            "SELECT notification_id FROM ledger_events WHERE event_type = 'Invoice.Paid'"
        ).fetchone()
    assert paid["position"] == positions["notification_id"], "data.position is the event's, for min_position"


def test_an_endpoint_gets_only_the_types_it_subscribed_to_from_its_creation_until_its_deletion(
    hooks: Hooks, receiver: Receiver
) -> None:
    register(hooks, "before")  # before any endpoint: nobody is told
    only_created = subscribed(hooks, receiver, ["customer.created"])
    customer = register(hooks, "during")
    hooks.container.ledger.update_customer(c.UpdateCustomer(customer, name="Renamed"), ctx(hooks))
    hooks.deliver()
    assert [r.type for r in receiver.delivered()] == ["customer.created"]
    assert receiver.delivered()[0].message["data"]["external_id"] == "during"

    assert (
        hooks.client.delete(f"/v1/webhook-endpoints/{only_created['id']}", headers=hooks.admin).status_code
        == 200
    )
    register(hooks, "after")
    hooks.deliver()
    assert len(receiver.received) == 1


def test_an_endpoint_down_for_two_hours_gets_every_event_once_it_is_back(
    hooks: Hooks, receiver: Receiver
) -> None:
    endpoint = subscribed(hooks, receiver, ["customer.created"])
    receiver.stop()  # down: connections refused
    went_down = hooks.clock.now
    customers = [register(hooks, f"c{i}") for i in range(3)]
    hooks.run_schedule_until(went_down + timedelta(minutes=20))  # tried at 0, 5 s and 5 min: refused
    receiver.answer(503)  # up again but failing, without Retry-After: the 30-minute retry is seen
    receiver.start()
    hooks.run_schedule_until(went_down + timedelta(hours=2))
    attempts_while_down = {d["webhook_id"]: d["attempt_count"] for d in hooks.deliveries(endpoint["id"])}
    assert len(attempts_while_down) == 3 and set(attempts_while_down.values()) == {4}  # 0, 5 s, 5 min, 30 min
    assert len(receiver.received) == 3, "the 30-minute retry of each reached the failing receiver"

    receiver.answer(200)  # back for good
    hooks.run_schedule_until(went_down + timedelta(hours=3))

    delivered = receiver.delivered()
    assert sorted(r.message["data"]["id"] for r in delivered) == sorted(map(str, customers))
    assert len(delivered) == 3, "each event once"
    assert {r.webhook_id for r in receiver.received} == set(attempts_while_down), "one webhook-id per event"
    for webhook_id in attempts_while_down:
        seen = [r for r in receiver.received if r.webhook_id == webhook_id]
        assert [r.answered for r in seen] == [503, 200] and all(r.verified_by for r in seen)
    for delivery in hooks.deliveries(endpoint["id"]):
        assert delivery["status"] == "succeeded"
        outcomes = [(a["status_code"], a["outcome"]) for a in delivery["attempts"]]
        assert outcomes == [(None, "retry")] * 3 + [(503, "retry"), (200, "succeeded")]
        assert "ConnectError" in delivery["attempts"][0]["error"]


def test_500_and_timeouts_are_retried_on_the_schedule_with_the_same_webhook_id(
    hooks: Hooks, receiver: Receiver
) -> None:
    endpoint = subscribed(hooks, receiver, ["customer.created"])
    hooks.restart(timeout_seconds=0.5)
    receiver.answer(500, times=1)
    receiver.answer(HANG, times=1)
    register(hooks, "acme")

    hooks.deliver()  # 500
    first_try = hooks.clock.now
    retry_at = hooks.next_attempt_at()
    assert retry_at is not None
    assert first_try + timedelta(seconds=4.5) <= retry_at <= first_try + timedelta(seconds=5.5)
    hooks.clock.now = retry_at
    hooks.deliver()  # no answer within the timeout
    retry_at = hooks.next_attempt_at()
    assert retry_at is not None
    assert hooks.clock.now + timedelta(minutes=4.5) <= retry_at <= hooks.clock.now + timedelta(minutes=5.5)
    hooks.clock.now = retry_at
    hooks.deliver()  # 200

    assert [r.answered for r in receiver.received] == [500, HANG, 200]
    assert len({r.webhook_id for r in receiver.received}) == 1
    assert all(r.verified_by for r in receiver.received)
    (delivery,) = hooks.deliveries(endpoint["id"])
    assert [a["status_code"] for a in delivery["attempts"]] == [500, None, 200]
    assert delivery["attempts"][1]["error"] == "no answer within 0.5s"
    assert delivery["status"] == "succeeded" and delivery["next_attempt_at"] is None


def test_an_endpoint_answering_410_is_disabled_and_sent_nothing_more(
    hooks: Hooks, receiver: Receiver
) -> None:
    endpoint = subscribed(hooks, receiver, ["customer.created"])
    hooks.restart(concurrency=1)  # one attempt at a time: the second delivery waits behind the first
    receiver.answer(410)
    register(hooks, "a")
    register(hooks, "b")
    hooks.deliver()
    hooks.clock.advance(days=3)
    register(hooks, "c")
    hooks.deliver()

    assert len(receiver.received) == 1
    shown = hooks.client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=hooks.admin).json()
    assert (shown["status"], shown["disabled_reason"]) == ("disabled", "answered 410 Gone")
    statuses = sorted(d["status"] for d in hooks.deliveries(endpoint["id"]))
    assert statuses == ["canceled", "failed"], "the other waiting delivery is not attempted"
    history = hooks.client.get(f"/v1/audit/streams/{endpoint['id']}", headers=hooks.admin).json()
    disabled = [e for e in history["events"] if e["type"] == "WebhookEndpoint.Disabled"]
    assert len(disabled) == 1 and disabled[0]["actor"] == "webhooks"


def test_429_and_503_are_retried_when_retry_after_says(hooks: Hooks, receiver: Receiver) -> None:
    endpoint = subscribed(hooks, receiver, ["customer.created"])
    receiver.answer(429, {"Retry-After": "120"}, times=1)
    register(hooks, "acme")
    hooks.deliver()
    asked_at = hooks.clock.now
    assert hooks.next_attempt_at() == asked_at + timedelta(seconds=120)

    hooks.clock.advance(seconds=60)  # the schedule's 5 s are long past, but the receiver asked for 120
    assert hooks.deliver() == 0
    hooks.clock.now = asked_at + timedelta(seconds=120)
    receiver.answer(503, {"Retry-After": "3600"}, times=1)
    hooks.deliver()
    assert hooks.next_attempt_at() == hooks.clock.now + timedelta(hours=1)
    hooks.clock.advance(hours=1)
    hooks.deliver()

    assert [r.answered for r in receiver.received] == [429, 503, 200]
    (delivery,) = hooks.deliveries(endpoint["id"])
    assert delivery["status"] == "succeeded"


def test_after_a_rotation_both_secrets_sign_for_24_hours_then_only_the_new_one(
    hooks: Hooks, receiver: Receiver
) -> None:
    endpoint = subscribed(hooks, receiver, ["customer.created"])
    old = endpoint["secret"]
    rotated = hooks.client.post(f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret", headers=hooks.admin)
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new.startswith("whsec_") and new != old
    rotated_at = hooks.clock.now
    receiver.secrets.append(new)

    register(hooks, "at-once")
    hooks.deliver()
    hooks.clock.now = rotated_at + timedelta(hours=23, minutes=59)
    register(hooks, "a-day-later")
    hooks.deliver()
    hooks.clock.now = rotated_at + timedelta(hours=24, seconds=1)
    register(hooks, "after-the-overlap")
    hooks.deliver()

    assert [r.verified_by for r in receiver.delivered()] == [(old, new), (old, new), (new,)]
    shown = hooks.client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=hooks.admin).json()
    assert (
        shown["secret_fingerprint"] == rotated.json()["secret_fingerprint"] != endpoint["secret_fingerprint"]
    )
    assert datetime.fromisoformat(shown["previous_secret_valid_until"]) == rotated_at + timedelta(hours=24)
    assert "secret" not in shown


def test_a_restarted_sender_loses_and_duplicates_nothing(hooks: Hooks, receiver: Receiver) -> None:
    subscribed(hooks, receiver, ["customer.created"])
    receiver.answer(500)
    register(hooks, "a")
    register(hooks, "b")
    hooks.deliver()
    hooks.clock.advance(seconds=6)
    hooks.deliver()  # each has failed twice

    hooks.restart()  # a new process: nothing but the database carries over
    register(hooks, "c")  # written while the sender was away
    receiver.answer(200)
    hooks.run_schedule_until(hooks.clock.now + timedelta(hours=1))

    delivered = receiver.delivered()
    assert sorted(r.message["data"]["external_id"] for r in delivered) == ["a", "b", "c"]
    assert len({r.webhook_id for r in receiver.received}) == 3
    hooks.clock.advance(days=2)
    assert hooks.deliver() == 0


def test_a_sender_that_dies_mid_attempt_is_replaced_once_its_lease_runs_out(
    hooks: Hooks, receiver: Receiver
) -> None:
    endpoint = subscribed(hooks, receiver, ["customer.created"])
    register(hooks, "acme")
    hooks.fanout.catch_up()
    (taken,) = hooks.dispatcher.claim(10)  # ...and the process dies before the answer is recorded

    hooks.restart()
    assert hooks.deliver() == 0, "nobody else makes an attempt that is still leased"
    hooks.clock.now += hooks.dispatcher.lease + timedelta(seconds=1)
    assert hooks.deliver() == 1

    assert len(receiver.delivered()) == 1
    (delivery,) = hooks.deliveries(endpoint["id"])
    assert delivery["webhook_id"] == taken.msg_id
    assert [a["outcome"] for a in delivery["attempts"]] == ["interrupted", "succeeded"]


def test_two_senders_at_once_never_make_the_same_attempt(hooks: Hooks, receiver: Receiver) -> None:
    subscribed(hooks, receiver, ["customer.created"])
    for i in range(24):
        register(hooks, f"c{i}")
    hooks.fanout.catch_up()
    other = Hooks(hooks.container, hooks.client, hooks.admin, hooks.clock, hooks.fanout, hooks.dispatcher)
    other.restart(concurrency=4)
    hooks.restart(concurrency=4)
    start = threading.Barrier(2)

    def drain(side: Hooks) -> None:
        start.wait()
        while side.dispatcher.deliver_due():
            pass

    threads = [threading.Thread(target=drain, args=(side,)) for side in (hooks, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    ids_ = receiver.ids()
    assert len(ids_) == 24 and len(set(ids_)) == 24


def test_fanning_the_log_out_again_creates_no_delivery_twice(hooks: Hooks, receiver: Receiver) -> None:
    endpoint = subscribed(hooks, receiver, ["customer.created"])
    for i in range(3):
        register(hooks, f"c{i}")
    hooks.deliver()
    with hooks.container.pool.connection() as conn:
        conn.execute("UPDATE projection_partitions SET position = 0, watermark = 0 WHERE name = 'webhooks'")
    hooks.restart()
    hooks.deliver()
    assert len(hooks.deliveries(endpoint["id"])) == 3
    assert len(receiver.received) == 3


def test_resend_delivers_the_same_message_again_even_after_the_schedule_gave_up(
    hooks: Hooks, receiver: Receiver
) -> None:
    endpoint = subscribed(hooks, receiver, ["customer.created"])
    receiver.answer(500)
    register(hooks, "acme")
    hooks.run_schedule_until(hooks.clock.now + timedelta(days=4))
    (delivery,) = hooks.deliveries(endpoint["id"])
    assert (delivery["status"], delivery["attempt_count"], delivery["next_attempt_at"]) == (
        "failed",
        10,
        None,
    )
    assert delivery["attempts"][-1]["outcome"] == "failed"

    receiver.answer(200)
    resent = hooks.client.post(f"/v1/webhook-deliveries/{delivery['id']}/resend", headers=hooks.admin)
    assert resent.status_code == 200, resent.text
    assert resent.json()["status"] == "pending"
    hooks.deliver()
    again = hooks.client.post(f"/v1/webhook-deliveries/{delivery['id']}/resend", headers=hooks.admin)
    assert again.status_code == 200
    hooks.deliver()

    assert [r.answered for r in receiver.received] == [500] * 10 + [200, 200]
    assert len({r.webhook_id for r in receiver.received}) == 1
    assert all(r.verified_by for r in receiver.received)
    (delivery,) = hooks.deliveries(endpoint["id"])
    assert (delivery["status"], delivery["attempt_count"]) == ("succeeded", 12)


def test_resending_to_a_disabled_endpoint_is_409_and_an_unknown_delivery_404(
    hooks: Hooks, receiver: Receiver
) -> None:
    endpoint = subscribed(hooks, receiver, ["customer.created"])
    receiver.answer(410)
    register(hooks, "acme")
    hooks.deliver()
    (delivery,) = hooks.deliveries(endpoint["id"])
    refused = hooks.client.post(f"/v1/webhook-deliveries/{delivery['id']}/resend", headers=hooks.admin)
    assert refused.status_code == 409
    assert refused.json()["type"].endswith("webhook_endpoint_disabled")
    unknown = hooks.client.post(f"/v1/webhook-deliveries/{endpoint['id']}/resend", headers=hooks.admin)
    assert unknown.status_code == 404


def test_a_sender_not_allowed_private_addresses_refuses_to_connect_to_one(
    hooks: Hooks, receiver: Receiver
) -> None:
    """An endpoint created while private addresses were allowed, or whose name now resolves to
    one (DNS rebinding), is refused at the connection, not only at creation."""
    endpoint = subscribed(hooks, receiver, ["customer.created"])
    hooks.restart(allow_private=False)
    register(hooks, "acme")
    hooks.deliver()
    assert receiver.received == []
    (delivery,) = hooks.deliveries(endpoint["id"])
    assert "private addresses are refused" in delivery["attempts"][0]["error"]
