"""The core projector: plans, customers, subscriptions, invoices, payments and alerts as rows.

Each handler receives one stored event (its envelope columns and JSON payload) and changes the
rows it concerns. Handlers never load aggregates and never read the clock: a replay gives the
same rows as live projection."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple, Protocol
from uuid import UUID

from psycopg.types.json import Jsonb

from domain.rules import monthly_recurring_amount


class StoredEventRow(NamedTuple):
    """A stored event as projectors see it (a tuple: cheap to build a million of)."""

    position: int
    stream_id: UUID
    version: int
    type: str
    occurred_at: datetime
    recorded_at: datetime
    customer_id: UUID | None
    payload: dict[str, Any]


class Executor(Protocol):
    """Where handlers send their statements: a psycopg cursor, or replay's pipeline sink."""

    def execute(self, query: Any, params: Any = ...) -> object: ...


Handler = Callable[[Executor, StoredEventRow], None]
HANDLERS: dict[str, Handler] = {}


def handles(event_type: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        HANDLERS[event_type] = handler
        return handler

    return register


def apply_event(cur: Executor, event: StoredEventRow) -> None:
    handler = HANDLERS.get(event.type)
    if handler is not None:
        handler(cur, event)


# ---------------------------------------------------------------------------- plans


@handles("Plan.Defined")
def plan_defined(cur: Executor, e: StoredEventRow) -> None:
    p = e.payload
    cur.execute(
        "INSERT INTO rm_plans (id, seq, code, name, currency, amount, interval, interval_count,"
        " trial_days, quotas, usage_prices, status, version, created_at, updated_at)"
        " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,'active',%s,%s,%s) ON CONFLICT (id) DO NOTHING",
        (
            e.stream_id,
            e.position,
            p["code"],
            p["name"],
            p["currency"],
            p["amount"],
            p["interval"],
            p["interval_count"],
            p["trial_days"],
            Jsonb(p["quotas"]),
            Jsonb(p["usage_prices"]),
            e.version,
            e.occurred_at,
            e.occurred_at,
        ),
    )


@handles("Plan.Revised")
def plan_revised(cur: Executor, e: StoredEventRow) -> None:
    p = e.payload
    cur.execute(
        "UPDATE rm_plans SET name=%s, currency=%s, amount=%s, interval=%s, interval_count=%s,"
        " trial_days=%s, quotas=%s, usage_prices=%s, version=%s, updated_at=%s WHERE id=%s",
        (
            p["name"],
            p["currency"],
            p["amount"],
            p["interval"],
            p["interval_count"],
            p["trial_days"],
            Jsonb(p["quotas"]),
            Jsonb(p["usage_prices"]),
            e.version,
            e.occurred_at,
            e.stream_id,
        ),
    )


@handles("Plan.Retired")
def plan_retired(cur: Executor, e: StoredEventRow) -> None:
    cur.execute(
        "UPDATE rm_plans SET status='retired', version=%s, updated_at=%s WHERE id=%s",
        (e.version, e.occurred_at, e.stream_id),
    )


# ---------------------------------------------------------------------------- customers


@handles("Customer.Registered")
def customer_registered(cur: Executor, e: StoredEventRow) -> None:
    p = e.payload
    cur.execute(
        "INSERT INTO rm_customers (id, seq, external_id, email, name, currency, tax_rate_bps,"
        " metadata, created_at, updated_at, tax_exempt, vat_id, address, net_terms_days,"
        " collection_method)"
        " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (id) DO NOTHING",
        (
            e.stream_id,
            e.position,
            p["external_id"],
            p["email"],
            p["name"],
            p["currency"],
            p["tax_rate_bps"],
            Jsonb(p["metadata"]),
            e.occurred_at,
            e.occurred_at,
            p.get("tax_exempt", "none"),
            p.get("vat_id"),
            Jsonb(p["address"]) if p.get("address") else None,
            p.get("net_terms_days", 30),
            p.get("collection_method") or "send_invoice",
        ),
    )


@handles("Customer.Updated")
def customer_updated(cur: Executor, e: StoredEventRow) -> None:
    p = e.payload
    cur.execute(
        "UPDATE rm_customers SET email=coalesce(%s, email), name=coalesce(%s, name),"
        " tax_rate_bps=coalesce(%s, tax_rate_bps), metadata=coalesce(%s, metadata),"
        " tax_exempt=coalesce(%s, tax_exempt), vat_id=coalesce(%s, vat_id),"
        " address=coalesce(%s, address), net_terms_days=coalesce(%s, net_terms_days),"
        " collection_method=coalesce(%s, collection_method), updated_at=%s"
        " WHERE id=%s",
        (
            p.get("email"),
            p.get("name"),
            p.get("tax_rate_bps"),
            Jsonb(p["metadata"]) if p.get("metadata") is not None else None,
            p.get("tax_exempt"),
            p.get("vat_id"),
            Jsonb(p["address"]) if p.get("address") is not None else None,
            p.get("net_terms_days"),
            p.get("collection_method"),
            e.occurred_at,
            e.stream_id,
        ),
    )


@handles("Customer.Archived")
def customer_archived(cur: Executor, e: StoredEventRow) -> None:
    cur.execute(
        "UPDATE rm_customers SET archived=true, updated_at=%s WHERE id=%s", (e.occurred_at, e.stream_id)
    )


# ---------------------------------------------------------------------------- subscriptions


def monthly_amount(p: dict[str, Any]) -> int:
    """The monthly contribution a Started or Changed subscription event carries."""
    return monthly_recurring_amount(p["amount"], p["quantity"], p["interval"], p["interval_count"])


def _mark_customer_had_mrr(cur: Executor, subscription_id: UUID) -> None:
    cur.execute(
        "UPDATE rm_customers c SET ever_had_mrr=true FROM rm_subscriptions s"
        " WHERE s.id=%s AND c.id=s.customer_id AND s.status IN ('active','past_due') AND s.mrr > 0"
        " AND NOT c.ever_had_mrr",
        (subscription_id,),
    )


@handles("Subscription.Started")
def subscription_started(cur: Executor, e: StoredEventRow) -> None:
    p = e.payload
    status = "trialing" if p["trial_end"] else "active"
    cur.execute(
        "INSERT INTO rm_subscriptions (id, seq, customer_id, plan_code, quantity, status, amount,"
        " currency, interval, interval_count, mrr, current_period_start, current_period_end,"
        " trial_end, started_at, updated_at, billed_by)"
        " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (id) DO NOTHING",
        (
            e.stream_id,
            e.position,
            p["customer_id"],
            p["plan_code"],
            p["quantity"],
            status,
            p["amount"],
            p["currency"],
            p["interval"],
            p["interval_count"],
            monthly_amount(p),
            p["period_start"],
            p["period_end"],
            p["trial_end"],
            e.occurred_at,
            e.occurred_at,
            p.get("billed_by", "ledger"),
        ),
    )
    _mark_customer_had_mrr(cur, e.stream_id)


@handles("Subscription.TrialEnded")
def subscription_trial_ended(cur: Executor, e: StoredEventRow) -> None:
    p = e.payload
    cur.execute(
        "UPDATE rm_subscriptions SET status='active', trial_end=%s, current_period_start=%s,"
        " current_period_end=%s, updated_at=%s WHERE id=%s",
        (e.occurred_at, p["period_start"], p["period_end"], e.occurred_at, e.stream_id),
    )
    _mark_customer_had_mrr(cur, e.stream_id)


@handles("Subscription.Changed")
def subscription_changed(cur: Executor, e: StoredEventRow) -> None:
    p = e.payload
    cur.execute(
        "UPDATE rm_subscriptions SET plan_code=%s, amount=%s, interval=%s, interval_count=%s,"
        " quantity=%s, mrr=%s + items_mrr, current_period_start=%s, current_period_end=%s, updated_at=%s"
        " WHERE id=%s",
        (
            p["plan_code"],
            p["amount"],
            p["interval"],
            p["interval_count"],
            p["quantity"],
            monthly_amount(p),
            p["period_start"],
            p["period_end"],
            e.occurred_at,
            e.stream_id,
        ),
    )
    _mark_customer_had_mrr(cur, e.stream_id)


# Add-on items (SPEC 10): `items` lists the live ones as the API shows them, `items_mrr` sums
# their monthly amounts and `mrr` is the plan's monthly amount plus that sum.
ITEMS_BUT = (
    "(SELECT coalesce(jsonb_agg(i ORDER BY o), '[]'::jsonb)"
    " FROM jsonb_array_elements(items) WITH ORDINALITY AS t(i, o) WHERE i->>'id' <> %s::text)"
)


def _set_items(cur: Executor, e: StoredEventRow, new_items: str, *params: Any) -> None:
    """Replace the subscription's items by the expression `new_items` (over its current row) and
    keep its MRR columns in step."""
    cur.execute(
        "UPDATE rm_subscriptions s SET items = n.items, mrr = s.mrr - s.items_mrr + n.items_mrr,"
        " items_mrr = n.items_mrr, updated_at = %s"
        " FROM (SELECT x.items, (SELECT coalesce(sum((i->>'monthly_amount')::bigint), 0)"
        " FROM jsonb_array_elements(x.items) AS i) AS items_mrr"
        f" FROM (SELECT {new_items} AS items FROM rm_subscriptions WHERE id = %s) x) n"
        " WHERE s.id = %s",
        (e.occurred_at, *params, e.stream_id, e.stream_id),
    )


def item_monthly_amount(p: dict[str, Any]) -> int:
    """What an item event says the item now adds to MRR each month (0 once removed)."""
    if "amount" not in p:
        return 0
    return monthly_recurring_amount(p["amount"], p["quantity"], p["interval"], p["interval_count"])


@handles("Subscription.ItemAdded")
def subscription_item_added(cur: Executor, e: StoredEventRow) -> None:
    p = e.payload
    item = {
        "id": str(p["item_id"]),
        "plan_code": p["plan_code"],
        "name": p["name"],
        "amount": p["amount"],
        "interval": p["interval"],
        "interval_count": p["interval_count"],
        "quantity": p["quantity"],
        "monthly_amount": item_monthly_amount(p),
        "added_at": e.occurred_at.isoformat(),
    }
    _set_items(
        cur,
        e,
        f"{ITEMS_BUT} || jsonb_build_array(%s::jsonb || jsonb_build_object('currency', currency))",
        str(p["item_id"]),
        Jsonb(item),
    )
    _mark_customer_had_mrr(cur, e.stream_id)


@handles("Subscription.ItemQuantityChanged")
def subscription_item_quantity_changed(cur: Executor, e: StoredEventRow) -> None:
    p = e.payload
    _set_items(
        cur,
        e,
        "(SELECT coalesce(jsonb_agg(CASE WHEN i->>'id' = %s::text THEN i || %s::jsonb ELSE i END ORDER BY o),"
        " '[]'::jsonb) FROM jsonb_array_elements(items) WITH ORDINALITY AS t(i, o))",
        str(p["item_id"]),
        Jsonb({"quantity": p["quantity"], "monthly_amount": item_monthly_amount(p)}),
    )
    _mark_customer_had_mrr(cur, e.stream_id)


@handles("Subscription.ItemRemoved")
def subscription_item_removed(cur: Executor, e: StoredEventRow) -> None:
    _set_items(cur, e, ITEMS_BUT, str(e.payload["item_id"]))


@handles("Subscription.Renewed")
def subscription_renewed(cur: Executor, e: StoredEventRow) -> None:
    p = e.payload
    cur.execute(
        "UPDATE rm_subscriptions SET current_period_start=%s, current_period_end=%s, updated_at=%s"
        " WHERE id=%s",
        (p["period_start"], p["period_end"], e.occurred_at, e.stream_id),
    )


def _set_subscription(cur: Executor, e: StoredEventRow, assignments: str, *values: Any) -> None:
    cur.execute(
        f"UPDATE rm_subscriptions SET {assignments}, updated_at=%s WHERE id=%s",
        (*values, e.occurred_at, e.stream_id),
    )


@handles("Subscription.PastDue")
def subscription_past_due(cur: Executor, e: StoredEventRow) -> None:
    _set_subscription(cur, e, "status='past_due'")


@handles("Subscription.Recovered")
def subscription_recovered(cur: Executor, e: StoredEventRow) -> None:
    _set_subscription(cur, e, "status='active'")


@handles("Subscription.CancellationScheduled")
def subscription_cancellation_scheduled(cur: Executor, e: StoredEventRow) -> None:
    _set_subscription(
        cur, e, "cancel_at_period_end=true, canceled_at=%s, cancel_at=%s", e.occurred_at, e.payload["ends_at"]
    )


@handles("Subscription.CancellationWithdrawn")
def subscription_cancellation_withdrawn(cur: Executor, e: StoredEventRow) -> None:
    _set_subscription(cur, e, "cancel_at_period_end=false, canceled_at=NULL, cancel_at=NULL")


@handles("Subscription.Canceled")
def subscription_canceled(cur: Executor, e: StoredEventRow) -> None:
    p = e.payload
    _set_subscription(
        cur,
        e,
        "status='canceled', cancel_at_period_end=false, canceled_at=coalesce(canceled_at, %s), ended_at=%s,"
        " current_period_start=coalesce(%s, current_period_start),"
        " current_period_end=coalesce(%s, current_period_end)",
        e.occurred_at,
        p["ended_at"],
        p.get("period_start"),
        p.get("period_end"),
    )


# ---------------------------------------------------------------------------- invoices

# The buyer as an issued document names it (EU art. 226: name, address, VAT id), kept as the
# customer stood when the invoice was finalized or the credit note issued: a later change of
# address never changes a document already issued. The customer's events come before, in the
# log and in its Kafka partition (keyed by customer), so its row is up to date here.
BUYER_OF = (
    "(SELECT jsonb_build_object('name', c.name, 'email', c.email, 'address', c.address,"
    " 'vat_id', c.vat_id, 'tax_exempt', c.tax_exempt) FROM rm_customers c WHERE c.id = {customer})"
)


@handles("Invoice.Drafted")
def invoice_drafted(cur: Executor, e: StoredEventRow) -> None:
    p = e.payload
    figures = p.get("figures") or {"subtotal": 0, "discount": 0, "tax": 0, "total": 0}
    cur.execute(
        "INSERT INTO rm_invoices (id, seq, customer_id, subscription_id, status, currency, lines,"
        " subtotal, discount, tax, total, amount_paid, amount_remaining, created_at, updated_at,"
        " period_start, period_end, billing_reason, tax_rate_bps, tax_exempt, coupon, finalize_at)"
        " VALUES (%s,%s,%s,%s,'draft',%s,%s,%s,%s,%s,%s,0,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
        " ON CONFLICT (id) DO NOTHING",
        (
            e.stream_id,
            e.position,
            p["customer_id"],
            p["subscription_id"],
            p["currency"],
            Jsonb(p.get("lines") or []),
            figures["subtotal"],
            figures["discount"] if p.get("figures") else p["discount"],
            figures["tax"],
            figures["total"],
            max(figures["total"], 0),
            e.occurred_at,
            e.occurred_at,
            p.get("period_start"),
            p.get("period_end"),
            p.get("billing_reason", "manual"),
            p.get("tax_rate_bps", 0),
            p.get("tax_exempt", "none"),
            Jsonb(p["coupon"]) if p.get("coupon") else None,
            p.get("finalize_at"),
        ),
    )


# A draft's figures as its lines make them (nothing is paid on a draft: all of it remains).
_DRAFT_FIGURES = (
    "subtotal=%s, discount=%s, tax=%s, total=%s, amount_remaining=greatest(%s, 0), updated_at=%s WHERE id=%s"
)


def _draft_figures(figures: dict[str, Any], e: StoredEventRow) -> tuple[Any, ...]:
    subtotal, discount, tax, total = (figures[k] for k in ("subtotal", "discount", "tax", "total"))
    return (subtotal, discount, tax, total, total, e.occurred_at, e.stream_id)


@handles("Invoice.LineAdded")
def invoice_line_added(cur: Executor, e: StoredEventRow) -> None:
    p = e.payload
    line = {
        k: p[k] for k in ("description", "quantity", "unit_amount", "amount", "period_start", "period_end")
    }
    if p.get("line_id"):
        line = {"line_id": p["line_id"], "kind": "manual", **line}
    figures = p.get("figures")
    if figures is None:  # recorded before drafts carried their figures
        cur.execute(
            "UPDATE rm_invoices SET lines = lines || jsonb_build_array(%s::jsonb),"
            " subtotal = subtotal + %s, updated_at=%s WHERE id=%s",
            (Jsonb(line), p["amount"], e.occurred_at, e.stream_id),
        )
        return
    cur.execute(
        f"UPDATE rm_invoices SET lines = lines || jsonb_build_array(%s::jsonb), {_DRAFT_FIGURES}",
        (Jsonb(line), *_draft_figures(figures, e)),
    )


@handles("Invoice.LinesRevised")
def invoice_lines_revised(cur: Executor, e: StoredEventRow) -> None:
    p = e.payload
    figures = p["figures"]
    cur.execute(
        f"UPDATE rm_invoices SET lines=%s, {_DRAFT_FIGURES}", (Jsonb(p["lines"]), *_draft_figures(figures, e))
    )


@handles("Invoice.Finalized")
def invoice_finalized(cur: Executor, e: StoredEventRow) -> None:
    p = e.payload
    applied = p.get("balance_applied", 0)
    cur.execute(
        "UPDATE rm_invoices SET status='open', number=%s, due_date=%s, subtotal=%s, discount=%s,"
        " tax=%s, total=%s, balance_applied=%s, amount_remaining=%s, finalized_at=%s, updated_at=%s,"
        " collection_method=%s,"
        f" buyer={BUYER_OF.format(customer='rm_invoices.customer_id')} WHERE id=%s",
        (
            p["number"],
            p["due_date"],
            p["subtotal"],
            p["discount"],
            p["tax"],
            p["total"],
            applied,
            max(p["total"], 0) - applied,
            e.occurred_at,
            e.occurred_at,
            p.get("collection_method"),
            e.stream_id,
        ),
    )


@handles("Invoice.DunningStarted")
def invoice_dunning_started(cur: Executor, e: StoredEventRow) -> None:
    p = e.payload
    schedule = p["schedule"]
    dunning = {
        "state": p["state"],
        "next_action_at": schedule[0] if schedule else None,
        "steps_taken": 0,
        "final_action": p["final_action"],
        "started_at": e.occurred_at.isoformat(),
    }
    cur.execute(
        "UPDATE rm_invoices SET dunning=%s, updated_at=%s WHERE id=%s",
        (Jsonb(dunning), e.occurred_at, e.stream_id),
    )


@handles("Invoice.DunningStepTaken")
def invoice_dunning_step_taken(cur: Executor, e: StoredEventRow) -> None:
    p = e.payload
    change: dict[str, Any] = {"steps_taken": p["step"], "next_action_at": p["next_action_at"]}
    if p["action"] == "final":
        change["state"] = "exhausted"
    cur.execute(
        "UPDATE rm_invoices SET dunning = dunning || %s, updated_at=%s WHERE id=%s",
        (Jsonb(change), e.occurred_at, e.stream_id),
    )


@handles("Invoice.PaymentFailed")
def invoice_payment_failed(cur: Executor, e: StoredEventRow) -> None:
    cur.execute(
        "UPDATE rm_invoices SET payment_failures=%s, updated_at=%s WHERE id=%s",
        (e.payload["failures"], e.occurred_at, e.stream_id),
    )


@handles("Invoice.Credited")
def invoice_credited(cur: Executor, e: StoredEventRow) -> None:
    p = e.payload
    cur.execute(
        "UPDATE rm_invoices SET amount_credited = amount_credited + %s,"
        " amount_remaining = amount_remaining - %s, updated_at=%s WHERE id=%s",
        (p["amount"], p["against_remaining"], e.occurred_at, e.stream_id),
    )


@handles("Invoice.PaymentApplied")
def invoice_payment_applied(cur: Executor, e: StoredEventRow) -> None:
    cur.execute(
        "UPDATE rm_invoices SET amount_paid = amount_paid + %s,"
        " amount_remaining = amount_remaining - %s, updated_at=%s WHERE id=%s",
        (e.payload["amount"], e.payload["amount"], e.occurred_at, e.stream_id),
    )


def _set_invoice_status(cur: Executor, e: StoredEventRow, status: str, clear_remaining: bool) -> None:
    """Settled: dunning under way stops (as `Invoice._stop_dunning`)."""
    remaining = ", amount_remaining = 0" if clear_remaining else ""
    cur.execute(
        f"UPDATE rm_invoices SET status=%s{remaining}, updated_at=%s,"
        " dunning = CASE WHEN dunning->>'state' IN ('retrying', 'reminding')"
        ' THEN dunning || \'{"state": "stopped", "next_action_at": null}\'::jsonb ELSE dunning END'
        " WHERE id=%s",
        (status, e.occurred_at, e.stream_id),
    )


@handles("Invoice.Paid")
def invoice_paid(cur: Executor, e: StoredEventRow) -> None:
    _set_invoice_status(cur, e, "paid", clear_remaining=False)


@handles("Invoice.Voided")
def invoice_voided(cur: Executor, e: StoredEventRow) -> None:
    _set_invoice_status(cur, e, "void", clear_remaining=True)


@handles("Invoice.MarkedUncollectible")
def invoice_marked_uncollectible(cur: Executor, e: StoredEventRow) -> None:
    _set_invoice_status(cur, e, "uncollectible", clear_remaining=True)


# ---------------------------------------------------------------------------- payments


@handles("Payment.Initiated")
def payment_initiated(cur: Executor, e: StoredEventRow) -> None:
    p = e.payload
    cur.execute(
        "INSERT INTO rm_payments (id, seq, customer_id, invoice_id, amount, currency, status,"
        " attempt, provider_reference, created_at, updated_at, method)"
        " VALUES (%s,%s,%s,%s,%s,%s,'pending',%s,%s,%s,%s,%s) ON CONFLICT (id) DO NOTHING",
        (
            e.stream_id,
            e.position,
            p["customer_id"],
            p["invoice_id"],
            p["amount"],
            p["currency"],
            p.get("attempt", 1),
            p["provider_reference"],
            e.occurred_at,
            e.occurred_at,
            p.get("method") or "manual",
        ),
    )


@handles("Payment.Submitted")
def payment_submitted(cur: Executor, e: StoredEventRow) -> None:
    p = e.payload
    _set_payment(cur, e, "external_payment_id=%s, payment_url=%s", p["external_payment_id"], p["payment_url"])


@handles("Payment.Canceled")
def payment_canceled(cur: Executor, e: StoredEventRow) -> None:
    _set_payment(cur, e, "status='canceled', failure_message=%s", e.payload["reason"])


def _set_payment(cur: Executor, e: StoredEventRow, assignments: str, *values: Any) -> None:
    cur.execute(
        f"UPDATE rm_payments SET {assignments}, updated_at=%s WHERE id=%s",
        (*values, e.occurred_at, e.stream_id),
    )


@handles("Payment.Succeeded")
def payment_succeeded(cur: Executor, e: StoredEventRow) -> None:
    _set_payment(cur, e, "status='succeeded', failure_code=NULL, failure_message=NULL")


@handles("Payment.Failed")
def payment_failed(cur: Executor, e: StoredEventRow) -> None:
    p = e.payload
    _set_payment(
        cur,
        e,
        "status='failed', failure_code=%s, failure_message=%s",
        p["failure_code"],
        p["failure_message"],
    )


@handles("Payment.Retried")
def payment_retried(cur: Executor, e: StoredEventRow) -> None:
    _set_payment(
        cur,
        e,
        "status='pending', attempt=%s, external_payment_id=NULL, payment_url=NULL",
        e.payload["attempt"],
    )


@handles("Payment.AttachedToInvoice")
def payment_attached_to_invoice(cur: Executor, e: StoredEventRow) -> None:
    _set_payment(cur, e, "invoice_id=%s", e.payload["invoice_id"])


@handles("Payment.Refunded")
def payment_refunded(cur: Executor, e: StoredEventRow) -> None:
    _set_payment(
        cur,
        e,
        "amount_refunded=%s, status=CASE WHEN %s = amount THEN 'refunded' ELSE status END",
        e.payload["amount_refunded"],
        e.payload["amount_refunded"],
    )


# ---------------------------------------------------------------------------- alerts


@handles("Alert.Raised")
def alert_raised(cur: Executor, e: StoredEventRow) -> None:
    p = e.payload
    cur.execute(
        "INSERT INTO rm_alerts (id, seq, type, severity, status, customer_id, subject, message,"
        " raised_at) VALUES (%s,%s,%s,%s,'open',%s,%s,%s,%s) ON CONFLICT (id) DO NOTHING",
        (
            e.stream_id,
            e.position,
            p["alert_type"],
            p["severity"],
            p["customer_id"],
            p["subject"],
            p["message"],
            e.occurred_at,
        ),
    )


@handles("Alert.Resolved")
def alert_resolved(cur: Executor, e: StoredEventRow) -> None:
    cur.execute(
        "UPDATE rm_alerts SET status='resolved', resolved_at=%s, note=%s WHERE id=%s",
        (e.occurred_at, e.payload["note"], e.stream_id),
    )


@handles("Alert.Reopened")
def alert_reopened(cur: Executor, e: StoredEventRow) -> None:
    cur.execute(
        "UPDATE rm_alerts SET status='open', message=%s, raised_at=%s, resolved_at=NULL, note=NULL"
        " WHERE id=%s",
        (e.payload["message"], e.occurred_at, e.stream_id),
    )


# ---------------------------------------------------------------------------- billing


@handles("Customer.BalanceAdjusted")
def customer_balance_adjusted(cur: Executor, e: StoredEventRow) -> None:
    p = e.payload
    cur.execute(
        "INSERT INTO rm_customer_balances (customer_id, currency, amount) VALUES (%s, %s, %s)"
        " ON CONFLICT (customer_id, currency)"
        " DO UPDATE SET amount = rm_customer_balances.amount + excluded.amount",
        (e.stream_id, p["currency"], p["amount"]),
    )


@handles("Customer.DiscountApplied")
def customer_discount_applied(cur: Executor, e: StoredEventRow) -> None:
    cur.execute(
        "UPDATE rm_customers SET discount=%s, updated_at=%s WHERE id=%s",
        (Jsonb(e.payload["discount"]), e.occurred_at, e.stream_id),
    )


@handles("Subscription.DiscountApplied")
def subscription_discount_applied(cur: Executor, e: StoredEventRow) -> None:
    _set_subscription(cur, e, "discount=%s", Jsonb(e.payload["discount"]))


@handles("Coupon.Defined")
def coupon_defined(cur: Executor, e: StoredEventRow) -> None:
    p = e.payload
    cur.execute(
        "INSERT INTO rm_coupons (id, seq, code, name, percent_off, amount_off, currency, duration,"
        " duration_in_periods, created_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
        " ON CONFLICT (id) DO NOTHING",
        (
            e.stream_id,
            e.position,
            p["code"],
            p["name"],
            p["percent_off"],
            p["amount_off"],
            p["currency"],
            p["duration"],
            p["duration_in_periods"],
            e.occurred_at,
        ),
    )


@handles("CreditNote.Issued")
def credit_note_issued(cur: Executor, e: StoredEventRow) -> None:
    p = e.payload
    cur.execute(
        "INSERT INTO rm_credit_notes (id, seq, number, invoice_id, customer_id, currency, reason, amount,"
        " lines, against_remaining, refund_amount, credit_amount, memo, created_at, buyer)"
        f" VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,{BUYER_OF.format(customer='%s')})"
        " ON CONFLICT (id) DO NOTHING",
        (
            e.stream_id,
            e.position,
            p["number"],
            p["invoice_id"],
            p["customer_id"],
            p["currency"],
            p["reason"],
            p["amount"],
            Jsonb(p["lines"]),
            p["against_remaining"],
            p["refund_amount"],
            p["credit_amount"],
            p["memo"],
            e.occurred_at,
            p["customer_id"],
        ),
    )
