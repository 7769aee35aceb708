"""A year of two customers through the API and the test clock (SPEC 7): a trial, monthly and
yearly plans, an upgrade mid-period (create_prorations), a quantity change (always_invoice), a
coupon for 3 invoices, graduated usage on time, late inside the grace period, months late and
corrected downwards, a credit note on a paid invoice and the credit balance it leaves, reverse
charge, a cancellation now. Every invoice's lines and figures equal an independent computation
written here from SPEC 7 alone (it shares no code with the ledger)."""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from infra.bootstrap import CORE_PROJECTION
from projections.replay import replay
from tests.conftest import bearer, read_model_rows
from tests.integration.conftest import Clocked

TIERS = [(1000, Decimal("0.5")), (10000, Decimal("0.2")), (None, Decimal("0.1"))]
PRICES = {
    "calls": {
        "model": "graduated",
        "tiers": [{"up_to": up_to, "unit_amount": str(price)} for up_to, price in TIERS],
    }
}
TAX_BPS = 2000


# ---------------------------------------------------------------------- SPEC 7, independently


def half_even(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def graduated(quantity: int) -> int:
    total, floor = Decimal(0), 0
    for up_to, price in TIERS:
        top = quantity if up_to is None else min(quantity, up_to)
        if top > floor:
            total += (top - floor) * price
        if up_to is None or quantity <= up_to:
            break
        floor = up_to
    return half_even(total)


def a_month_after(moment: datetime) -> datetime:
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def share(amount: int, start: datetime, end: datetime, at: datetime) -> int:
    """amount × (seconds from `at` to the period's end) / (the period's seconds), half-even."""
    remaining = int((end - at).total_seconds())
    return half_even(Decimal(amount * remaining) / Decimal(int((end - start).total_seconds())))


def expected_figures(amounts: list[int], *, percent_off: int = 0, tax_bps: int = TAX_BPS) -> dict[str, int]:
    subtotal = sum(amounts)
    discount = min(subtotal, half_even(Decimal(subtotal * percent_off) / 100)) if subtotal > 0 else 0
    tax = half_even(Decimal((subtotal - discount) * tax_bps) / 10_000)
    return {"subtotal": subtotal, "discount": discount, "tax": tax, "total": subtotal - discount + tax}


# ---------------------------------------------------------------------- helpers


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def invoices_of(api: Clocked, customer: str) -> list[dict[str, Any]]:
    return list(api.get("/v1/invoices", customer_id=customer, limit=100)["data"])


def lines(invoice: dict[str, Any]) -> list[tuple[str, int]]:
    return [(line["kind"], line["amount"]) for line in invoice["lines"]]


def figures(invoice: dict[str, Any]) -> dict[str, int]:
    return {k: invoice[k] for k in ("subtotal", "discount", "tax", "total")}


class Usage:
    def __init__(self, api: Clocked, customer_external_id: str) -> None:
        _, raw = api.container.keys.mint(role="ingest", name="app")
        self.api, self.subject, self.key = api, customer_external_id, bearer(raw)

    def send(self, event_id: str, value: int, at: datetime, corrects: str | None = None) -> None:
        kind, data = (
            ("usage.corrected", {"corrects": corrects, "value": value})
            if corrects
            else ("usage.recorded", {"metric": "calls", "value": value})
        )
        event = {"specversion": "1.0", "id": event_id, "source": "app", "type": kind}
        event |= {"subject": self.subject, "time": iso(at), "data": data}
        response = self.api.client.post("/v1/events", json=[event], headers=self.key)
        assert response.status_code == 202, response.text
        self.api.position = max(self.api.position, response.json()["position"])


# ---------------------------------------------------------------------- the year


def test_a_year_of_billing_equals_an_independent_computation_from_spec_7(clocked: Clocked) -> None:
    api = clocked
    t0 = api.now.replace(microsecond=0) + timedelta(hours=1)  # frozen there: the wall never catches up
    api.advance(t0)
    plan = {"currency": "EUR", "interval": "month", "usage_prices": PRICES}
    api.post("/v1/plans", {"code": "basic", "name": "Basic", "amount": 2000, "trial_days": 14, **plan})
    api.post("/v1/plans", {"code": "plus", "name": "Plus", "amount": 5000, **plan})
    api.post(
        "/v1/plans",
        {"code": "annual", "name": "Annual", "currency": "EUR", "amount": 20000, "interval": "year"},
    )
    api.post(
        "/v1/coupons",
        {"code": "WELCOME", "percent_off": "10", "duration": "repeating", "duration_in_periods": 3},
    )
    acme = api.post(
        "/v1/customers",
        {"external_id": "acme", "email": "billing@acme.io", "currency": "EUR", "tax_rate_bps": TAX_BPS},
    )["id"]
    globex = api.post(
        "/v1/customers",
        {
            "external_id": "globex",
            "email": "ap@globex.de",
            "currency": "EUR",
            "tax_rate_bps": 1900,
            "tax_exempt": "reverse",
            "vat_id": "DE123456789",
        },
    )["id"]
    usage = Usage(api, "acme")

    # Globex: a yearly plan, reverse charge: one invoice for the year, no tax, and it says so.
    api.post("/v1/subscriptions", {"customer_id": globex, "plan_code": "annual"})
    # Acme: a 14-day trial, then monthly; a coupon for its next 3 invoices.
    sub = api.post("/v1/subscriptions", {"customer_id": acme, "plan_code": "basic"})["id"]
    api.post(f"/v1/subscriptions/{sub}/discount", {"coupon": "WELCOME"})
    api.advance(t0 + timedelta(days=5))
    usage.send("u0", 500, t0 + timedelta(days=5))  # during the trial: free

    trial_end = t0 + timedelta(days=14)
    p1 = (trial_end, a_month_after(trial_end))
    p2 = (p1[1], a_month_after(p1[1]))
    p3 = (p2[1], a_month_after(p2[1]))
    p4 = (p3[1], a_month_after(p3[1]))
    p5 = (p4[1], a_month_after(p4[1]))
    p6 = (p5[1], a_month_after(p5[1]))

    api.advance(p1[0] + timedelta(days=6))
    usage.send("u1", 1200, p1[0] + timedelta(days=6))
    # Upgrade halfway through P1, prorations on the next invoice.
    upgrade_at = p1[0] + (p1[1] - p1[0]) / 2
    api.advance(upgrade_at)
    api.post(f"/v1/subscriptions/{sub}/change", {"plan_code": "plus", "effective_at": iso(upgrade_at)})

    # P2 starts: the draft is made; usage of P1 arriving late, inside the grace hour, joins it.
    api.advance(p2[0] + timedelta(minutes=10))
    usage.send("u2", 300, p1[1] - timedelta(hours=1))
    api.advance(p2[0] + timedelta(hours=2))
    acme_invoices = invoices_of(api, acme)
    i1, i2 = acme_invoices
    # Pay I2 in full.
    payment = api.post(
        "/v1/payments",
        {"customer_id": acme, "invoice_id": i2["id"], "amount": i2["amount_remaining"], "currency": "EUR"},
    )["id"]
    api.post(f"/v1/payments/{payment}/succeed")
    # Quantity 2 ten days into P2, invoiced at once.
    quantity_at = p2[0] + timedelta(days=10)
    api.advance(quantity_at)
    api.post(
        f"/v1/subscriptions/{sub}/change",
        {"quantity": 2, "proration_behavior": "always_invoice", "effective_at": iso(quantity_at)},
    )

    # Months later (in P4), usage of P2 arrives: adjusted on the next invoice, naming P2's.
    api.advance(p4[0] + timedelta(days=5))
    usage.send("u3", 2000, p2[0] + timedelta(days=3))
    # In P5 the P1 record u1 is corrected downwards (1200 -> 200).
    api.advance(p5[0] + timedelta(days=2))
    usage.send("u1-fix", 200, p5[0] + timedelta(days=2), corrects="u1")
    # A credit note on the paid I2: 1000, of which 400 refunded and 600 credited.
    note = api.post(
        f"/v1/invoices/{i2['id']}/credit-notes",
        {"reason": "product_unsatisfactory", "amount": 1000, "refund_amount": 400},
    )
    # P6 starts: the credit balance pays part of its invoice. Then a cancellation now.
    cancel_at = p6[0] + timedelta(days=7)
    api.advance(cancel_at)
    api.post(f"/v1/subscriptions/{sub}/cancel", {"at_period_end": False, "effective_at": iso(cancel_at)})
    api.advance(cancel_at + timedelta(hours=2))

    invoices = invoices_of(api, acme)
    by_reason: dict[str, list[dict[str, Any]]] = {}
    for invoice in invoices:
        by_reason.setdefault(invoice["billing_reason"], []).append(invoice)
    cycle = by_reason["subscription_cycle"]
    assert [i["period_start"] for i in cycle] == [iso(p[0]) for p in (p1, p2, p3, p4, p5, p6)]
    i1, i2, i4, i5, i6, i7 = cycle
    (i3,) = by_reason["subscription_update"]
    (i8,) = by_reason["subscription_cancel"]

    # I1 at the trial's end: Basic's fee, no usage (the trial's is free), coupon 1 of 3.
    assert lines(i1) == [("fee", 2000)]
    assert figures(i1) == expected_figures([2000], percent_off=10)

    # I2 at P2: Plus's fee; P1's usage, 1200 + the 300 that came within the grace hour; the
    # upgrade's prorations; coupon 2 of 3.
    credit = -share(2000, *p1, upgrade_at)
    charge = share(5000, *p1, upgrade_at)
    assert sorted(lines(i2)) == sorted(
        [("fee", 5000), ("usage", graduated(1500)), ("proration", credit), ("proration", charge)]
    )
    assert graduated(1500) == 600
    assert figures(i2) == expected_figures([5000, 600, credit, charge], percent_off=10)
    (usage_line,) = [line for line in i2["lines"] if line["kind"] == "usage"]
    assert (usage_line["quantity"], usage_line["metric"]) == ("1500", "calls")
    assert usage_line["source"]["records"] == 2
    sources = api.get(f"/v1/invoices/{i2['id']}/lines/{usage_line['line_id']}/sources")
    assert sorted(int(r["value"]) for r in sources["data"]) == [300, 1200]

    # I3 now, for the quantity change: Plus × 1 credited, Plus × 2 charged; coupon 3 of 3.
    credit3, charge3 = -share(5000, *p2, quantity_at), share(10000, *p2, quantity_at)
    assert sorted(lines(i3)) == sorted([("proration", credit3), ("proration", charge3)])
    assert figures(i3) == expected_figures([credit3, charge3], percent_off=10)

    # I4 at P3: Plus × 2, no usage in P2 (yet), the coupon used up.
    assert lines(i4) == [("fee", 10000)]
    assert figures(i4) == expected_figures([10000])
    assert lines(i5) == [("fee", 10000)]
    # I6 at P5: P2's usage came months late: 2000 calls re-rated, minus the 0 billed on I4.
    adjustment = next(line for line in i6["lines"] if line["kind"] == "adjustment")
    assert adjustment["amount"] == graduated(2000) - 0 == 700
    assert i4["number"] in adjustment["description"]
    assert (adjustment["period_start"], adjustment["period_end"]) == (iso(p2[0]), iso(p2[1]))
    assert figures(i6) == expected_figures([10000, 700])
    # I7 at P6: P1 corrected downwards: 200 + 300 re-rated, minus the 600 billed on I2; the
    # credit note's 600 pays part of it at finalization.
    adjustment = next(line for line in i7["lines"] if line["kind"] == "adjustment")
    assert adjustment["amount"] == graduated(500) - 600 == -350
    assert i2["number"] in adjustment["description"]
    assert figures(i7) == expected_figures([10000, -350])
    assert i7["balance_applied"] == 600
    assert i7["amount_remaining"] == figures(i7)["total"] - 600

    # I8, the final invoice of the cancellation: the unused time of P6's Plus × 2 credited.
    final_credit = -share(10000, *p6, cancel_at)
    assert lines(i8) == [("proration", final_credit)]
    assert figures(i8) == expected_figures([final_credit])
    assert (i8["status"], i8["amount_remaining"]) == ("paid", 0)
    balance = api.get(f"/v1/customers/{acme}/balance")["balances"]
    assert balance == [{"currency": "EUR", "amount": -figures(i8)["total"]}]

    # The credit note: 1000 on I2, 400 refunded on its payment, 600 credited.
    assert (note["number"], note["refund_amount"], note["credit_amount"]) == ("CN-000001", 400, 600)
    paid = api.get(f"/v1/payments/{payment}")
    assert paid["amount_refunded"] == 400

    # Globex: one yearly invoice, reverse charge.
    (yearly,) = invoices_of(api, globex)
    assert lines(yearly) == [("fee", 20000)]
    assert figures(yearly) == expected_figures([20000], tax_bps=0)
    assert yearly["tax_note"] == "Reverse charge"

    # Numbers are gapless in finalization order; every invoice is finalized by now.
    numbers = sorted(int(i["number"].split("-")[1]) for i in [*invoices, yearly])
    assert numbers == list(range(1, len(numbers) + 1))

    # Running the clock again over the same time creates nothing.
    assert api.container.ledger.advance_due().advanced == 0

    # The books: every day's trial balance balances, and the receivable account equals what
    # remains on open invoices; rebuilding every read model from the log gives the same rows.
    _, audit = api.container.keys.mint(role="audit", name="auditor")
    day = t0.date()
    while day <= (cancel_at + timedelta(days=1)).date():
        balance = api.client.get(
            "/v1/ledger/trial-balance", params={"as_of": day.isoformat()}, headers=bearer(audit)
        ).json()
        assert all(t["balanced"] for t in balance["totals"]), (day, balance["totals"])
        day += timedelta(days=7)
    today = api.client.get("/v1/ledger/trial-balance", headers=bearer(audit)).json()
    receivable = sum(a["balance"] for a in today["accounts"] if a["account"] == "accounts_receivable")
    open_remaining = sum(
        i["amount_remaining"] for i in [*invoices_of(api, acme), yearly] if i["status"] == "open"
    )
    assert receivable == open_remaining
    credit_account = sum(a["balance"] for a in today["accounts"] if a["account"] == "customer_credit")
    assert -credit_account == balance_amount(api, acme) + balance_amount(api, globex)

    live = read_model_rows(api.container)
    schema = api.container.settings.database_schema
    replay(api.container.address.conninfo(), schema, CORE_PROJECTION, workers=1)
    assert read_model_rows(api.container) == live


def balance_amount(api: Clocked, customer: str) -> int:
    return sum(b["amount"] for b in api.get(f"/v1/customers/{customer}/balance")["balances"])
