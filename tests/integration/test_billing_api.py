"""The billing endpoints (SPEC 7) as a client uses them: coupons, discounts, credit notes, the
customer's balance, a line's sources, the upcoming invoice (also as known at a past moment),
subscriptions billed elsewhere, and the refusals that record nothing."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from typing import Any

from tests.conftest import bearer, count_events
from tests.integration.conftest import Clocked

PRICES = {"calls": {"model": "per_unit", "unit_amount": "0.06"}}


def setup(api: Clocked, *, trial_days: int = 0, billed_by: str = "ledger") -> tuple[str, str]:
    api.post(
        "/v1/plans",
        {
            "code": "pro",
            "name": "Pro",
            "currency": "EUR",
            "amount": 1000,
            "interval": "month",
            "trial_days": trial_days,
            "usage_prices": PRICES,
        },
    )
    customer = api.post(
        "/v1/customers",
        {
            "external_id": "acme",
            "email": "a@acme.io",
            "currency": "EUR",
            "tax_rate_bps": 2000,
            "net_terms_days": 14,
        },
    )["id"]
    sub = api.post(
        "/v1/subscriptions", {"customer_id": customer, "plan_code": "pro", "billed_by": billed_by}
    )["id"]
    return customer, sub


def invoices(api: Clocked, customer: str) -> list[dict[str, Any]]:
    return list(api.get("/v1/invoices", customer_id=customer)["data"])


def test_a_subscription_is_invoiced_when_it_starts_and_the_invoice_is_finalized_after_the_grace_hour(
    clocked: Clocked,
) -> None:
    customer, _ = setup(clocked)
    (draft,) = invoices(clocked, customer)
    assert (draft["status"], draft["number"], draft["billing_reason"]) == (
        "draft",
        None,
        "subscription_create",
    )
    # A draft is never all zeros: every figure is computed already.
    assert (draft["subtotal"], draft["tax"], draft["total"], draft["amount_remaining"]) == (
        1000,
        200,
        1200,
        1200,
    )
    clocked.advance(clocked.now + timedelta(minutes=61))
    (final,) = invoices(clocked, customer)
    assert final["status"] == "open" and final["number"] == "INV-000001"
    finalized = date.fromisoformat(final["finalized_at"][:10])
    assert final["due_date"] == (finalized + timedelta(days=14)).isoformat()


def test_a_subscription_billed_elsewhere_gets_no_invoice_from_the_ledger(clocked: Clocked) -> None:
    customer, _ = setup(clocked, billed_by="external")
    clocked.advance(clocked.now + timedelta(days=70))
    assert invoices(clocked, customer) == []


def test_sub_cent_usage_is_rated_exactly_and_its_line_lists_its_sources(clocked: Clocked) -> None:
    customer, _ = setup(clocked)
    _, raw = clocked.container.keys.mint(role="ingest", name="app")
    start = clocked.now
    clocked.advance(start + timedelta(days=2))
    events = [
        {
            "specversion": "1.0",
            "id": f"e{n}",
            "source": "app",
            "type": "usage.recorded",
            "subject": "acme",
            "time": (start + timedelta(days=1, minutes=n)).isoformat(),
            "data": {"metric": "calls", "value": value},
        }
        for n, value in enumerate((40_000, 25_000))
    ]
    response = clocked.client.post("/v1/events", json=events, headers=bearer(raw))
    assert response.status_code == 202
    clocked.advance(start + timedelta(days=33))
    cycle = next(i for i in invoices(clocked, customer) if i["billing_reason"] == "subscription_cycle")
    (line,) = [line for line in cycle["lines"] if line["kind"] == "usage"]
    assert (line["quantity"], line["amount"]) == ("65000", 3900)  # 65,000 × 0.06 cents
    sources = clocked.get(f"/v1/invoices/{cycle['id']}/lines/{line['line_id']}/sources")
    assert sorted(int(r["value"]) for r in sources["data"]) == [25_000, 40_000]
    ids = sorted(r["record_id"] for r in sources["data"])
    assert hashlib.sha256("\n".join(ids).encode()).hexdigest() == line["source"]["records_digest"]


def test_the_upcoming_invoice_is_what_the_next_boundary_would_make_and_records_nothing(
    clocked: Clocked,
) -> None:
    customer, sub = setup(clocked)
    clocked.advance(clocked.now + timedelta(hours=2))
    before = count_events(clocked.container)
    upcoming = clocked.get(f"/v1/customers/{customer}/upcoming-invoice", subscription_id=sub)
    assert count_events(clocked.container) == before
    assert (upcoming["status"], upcoming["billing_reason"]) == ("draft", "subscription_cycle")
    assert [(line["kind"], line["amount"]) for line in upcoming["lines"]] == [("fee", 1000)]
    # Known at a moment before the plan changed: the old amount.
    _, audit = clocked.container.keys.mint(role="audit", name="auditor")
    _, read = clocked.container.keys.mint(role="read", name="reader")
    known = datetime.now(UTC)  # known_at reads recorded_at: the wall clock, not the test clock
    clocked.post(
        "/v1/plans/pro/revise", {"name": "Pro", "currency": "EUR", "amount": 3000, "interval": "month"}
    )
    clocked.post(f"/v1/subscriptions/{sub}/change", {"plan_code": "pro", "quantity": 2})
    now_preview = clocked.get(f"/v1/customers/{customer}/upcoming-invoice")
    assert [line["amount"] for line in now_preview["lines"] if line["kind"] == "fee"] == [6000]
    response = clocked.client.get(
        f"/v1/customers/{customer}/upcoming-invoice",
        params={"known_at": known.isoformat()},
        headers=bearer(audit),
    )
    assert response.status_code == 200, response.text
    assert [line["amount"] for line in response.json()["lines"] if line["kind"] == "fee"] == [1000]
    refused = clocked.client.get(
        f"/v1/customers/{customer}/upcoming-invoice",
        params={"known_at": known.isoformat()},
        headers=bearer(read),
    )
    assert refused.status_code == 403


def test_coupons_and_discounts(clocked: Clocked) -> None:
    customer, sub = setup(clocked)
    coupon = {"code": "FIVE", "amount_off": 500, "currency": "EUR", "duration": "forever"}
    assert clocked.post("/v1/coupons", coupon)["code"] == "FIVE"
    assert clocked.post("/v1/coupons", coupon)["code"] == "FIVE"  # the same again: same answer
    before = count_events(clocked.container)
    other = clocked.client.post("/v1/coupons", json={**coupon, "amount_off": 600}, headers=clocked.admin)
    assert other.status_code == 409
    neither = clocked.client.post(
        "/v1/coupons", json={"code": "X", "duration": "once"}, headers=clocked.admin
    )
    assert neither.status_code == 422
    repeating = {"code": "R", "percent_off": "5", "duration": "repeating"}
    assert clocked.client.post("/v1/coupons", json=repeating, headers=clocked.admin).status_code == 422
    unknown = clocked.client.post(
        f"/v1/subscriptions/{sub}/discount", json={"coupon": "NOPE"}, headers=clocked.admin
    )
    assert unknown.status_code == 422
    assert count_events(clocked.container) == before
    # The customer's discount applies to its invoices; a subscription's own would win.
    clocked.post(f"/v1/customers/{customer}/discount", {"coupon": "FIVE"})
    clocked.advance(clocked.now + timedelta(days=32))
    cycle = next(i for i in invoices(clocked, customer) if i["billing_reason"] == "subscription_cycle")
    assert (cycle["subtotal"], cycle["discount"], cycle["tax"], cycle["total"]) == (1000, 500, 100, 600)
    assert clocked.get("/v1/coupons")["data"][0]["code"] == "FIVE"


def test_credit_notes_lower_what_remains_refund_or_credit_and_never_exceed_the_total(
    clocked: Clocked,
) -> None:
    customer, _ = setup(clocked)
    clocked.advance(clocked.now + timedelta(hours=2))
    (invoice,) = invoices(clocked, customer)
    assert invoice["total"] == 1200
    note = clocked.post(
        f"/v1/invoices/{invoice['id']}/credit-notes", {"reason": "order_change", "amount": 200}
    )
    assert (note["number"], note["against_remaining"], note["credit_amount"]) == ("CN-000001", 200, 0)
    assert clocked.get(f"/v1/invoices/{invoice['id']}")["amount_remaining"] == 1000
    paid = clocked.post(
        "/v1/payments",
        {"customer_id": customer, "invoice_id": invoice["id"], "amount": 1000, "currency": "EUR"},
    )
    clocked.post(f"/v1/payments/{paid['id']}/succeed")
    line = invoice["lines"][0]["line_id"]
    second = clocked.post(
        f"/v1/invoices/{invoice['id']}/credit-notes",
        {"reason": "duplicate", "lines": [{"line_id": line, "amount": 300}]},
    )
    assert (second["number"], second["credit_amount"], second["refund_amount"]) == ("CN-000002", 300, 0)
    assert clocked.get(f"/v1/customers/{customer}/balance")["balances"] == [
        {"currency": "EUR", "amount": 300}
    ]
    before = count_events(clocked.container)
    too_much = clocked.client.post(
        f"/v1/invoices/{invoice['id']}/credit-notes",
        json={"reason": "other", "amount": 701},
        headers=clocked.admin,
    )
    assert too_much.status_code == 409
    assert too_much.json()["type"].endswith("credit_note_exceeds_invoice")
    wrong_split = clocked.client.post(
        f"/v1/invoices/{invoice['id']}/credit-notes",
        json={"reason": "other", "amount": 100, "refund_amount": 50, "credit_amount": 10},
        headers=clocked.admin,
    )
    assert wrong_split.status_code == 422
    bad_reason = clocked.client.post(
        f"/v1/invoices/{invoice['id']}/credit-notes",
        json={"reason": "because", "amount": 1},
        headers=clocked.admin,
    )
    assert bad_reason.status_code == 422
    assert count_events(clocked.container) == before
    listed = clocked.get("/v1/credit-notes", invoice_id=invoice["id"])["data"]
    assert [n["number"] for n in listed] == ["CN-000001", "CN-000002"]
    assert clocked.get(f"/v1/credit-notes/{second['id']}")["amount"] == 300


def test_a_change_without_proration_bills_the_new_terms_from_the_next_period_only(clocked: Clocked) -> None:
    customer, sub = setup(clocked)
    start = clocked.now
    clocked.advance(start + timedelta(days=10))
    clocked.post(f"/v1/subscriptions/{sub}/change", {"quantity": 3, "proration_behavior": "none"})
    clocked.advance(start + timedelta(days=32))
    cycle = next(i for i in invoices(clocked, customer) if i["billing_reason"] == "subscription_cycle")
    assert [(line["kind"], line["amount"]) for line in cycle["lines"]] == [("fee", 3000)]
