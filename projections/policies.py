"""Policies (process managers): they follow the log and issue commands.

- a failed payment raises a critical `payment_failed` alert (subject: its invoice); a later
  success for that invoice resolves it;
- a subscription going past_due raises `customer_at_risk`; recovering resolves it;
- a canceled subscription raises `subscription_canceled` (churn);
- usage crossing 80%, 95% and 100% of a quota raises one `quota_threshold` alert each per period;
- each daily clock tick converts trials, ends scheduled cancellations and renews periods that
  are due, and raises `invoice_overdue` for open invoices past their due date (paying, voiding
  or writing the invoice off resolves it).

Every command carries an idempotency key derived from the triggering event's position and the
action, so an event handled twice (a crash before the checkpoint moved) changes nothing. Alerts
have one id per type and subject: a condition that comes back reopens its alert, so at most one
is open. The policies act only on events the core read models have applied (they read them for
invoices, subscriptions and usage), and the checkpoint is the `policies` row of the projector
checkpoints."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from decimal import Decimal
from functools import partial
from typing import Any, cast
from uuid import UUID

from psycopg_pool import ConnectionPool

from application import commands as c
from application.ledger import Ledger, Outcome
from domain import ids
from domain.alert import DEFAULT_SEVERITY
from domain.errors import DomainError
from domain.metrics import THRESHOLD_SEVERITY, thresholds_reached
from infra.background import BackgroundLoop
from projections.checkpoints import STORE_PARTITION, applied_position, lock_checkpoint, save_checkpoint
from projections.core import StoredEventRow
from projections.metric_queries import quotas
from projections.queries import get_customer
from projections.runner import read_range

log = logging.getLogger(__name__)

POLICIES = "policies"
SOURCE = "policy"
BATCH = 500
MAX_RENEWALS_PER_TICK = 36  # a subscription far behind catches up over a few ticks at most


class Policies:
    def __init__(self, pool: ConnectionPool, ledger: Ledger, core: str = "core") -> None:
        self.pool = pool
        self.ledger = ledger
        self.core = core
        self.handlers: dict[str, Callable[[StoredEventRow], None]] = {
            "Payment.Failed": self.payment_failed,
            "Payment.Succeeded": self.payment_succeeded,
            "Subscription.PastDue": self.subscription_past_due,
            "Subscription.Recovered": self.subscription_recovered,
            "Subscription.Canceled": self.subscription_canceled,
            "Invoice.Paid": self.invoice_settled,
            "Invoice.Voided": self.invoice_settled,
            "Invoice.MarkedUncollectible": self.invoice_settled,
            "UsageRecord.Recorded": self.usage_changed,
            "UsageRecord.Corrected": self.usage_changed,
            "ClockTick.Ticked": self.clock_ticked,
        }

    # ------------------------------------------------------------------ the loop

    def run_once(self) -> int:
        """Handle the next batch of events the core read models have applied."""
        ready = applied_position(self.pool, self.core)
        with self.pool.connection() as conn, conn.transaction():
            checkpoint = lock_checkpoint(conn, POLICIES, STORE_PARTITION)
            if checkpoint.position >= ready:
                return 0
            upto = min(ready, checkpoint.position + BATCH)
            events = read_range(conn, checkpoint.position, upto)
            for event in events:
                handler = self.handlers.get(event.type)
                if handler is not None:
                    handler(event)
            checkpoint.position = checkpoint.watermark = upto
            save_checkpoint(conn, POLICIES, checkpoint)
            return len(events) or 1

    def catch_up(self) -> int:
        total = 0
        while handled := self.run_once():
            total += handled
        return total

    # ------------------------------------------------------------------ commands

    def _ctx(self, trigger: StoredEventRow, action: str, at: datetime | None = None) -> c.CommandContext:
        return c.CommandContext(
            occurred_at=at or trigger.occurred_at,
            source=SOURCE,
            actor=f"policy:{action.split(':')[0]}",
            idempotency_key=f"policy:{trigger.position}:{action}",
        )

    def _try(self, command: Callable[[], Outcome]) -> Outcome | None:
        """Run a command; one the domain refuses (already done, not yet due) is not an error."""
        try:
            return command()
        except DomainError as refused:
            log.debug("policy command refused: %s", refused)
            return None

    def raise_alert(
        self,
        trigger: StoredEventRow,
        alert_type: str,
        subject: str,
        message: str,
        customer_id: UUID | None,
        *,
        severity: str | None = None,
        scope: str = "",
        at: datetime | None = None,
    ) -> None:
        cmd = c.RaiseAlert(
            alert_id=ids.alert_id(alert_type, subject, scope),
            alert_type=alert_type,
            severity=severity or DEFAULT_SEVERITY[alert_type],
            subject=subject,
            message=message,
            customer_id=customer_id,
        )
        ctx = self._ctx(trigger, f"raise:{alert_type}:{subject}:{scope}", at)
        self._try(lambda: self.ledger.raise_alert(cmd, ctx))

    def resolve_alert(self, trigger: StoredEventRow, alert_type: str, subject: str, note: str) -> None:
        alert_id = ids.alert_id(alert_type, subject)
        if self._open_alert(alert_id):
            ctx = self._ctx(trigger, f"resolve:{alert_type}:{subject}")
            self._try(lambda: self.ledger.resolve_alert(c.ResolveAlert(alert_id, note), ctx))

    def _open_alert(self, alert_id: UUID) -> bool:
        return (
            self._one("SELECT 1 AS open FROM rm_alerts WHERE id = %s AND status = 'open'", alert_id)
            is not None
        )

    def _one(self, query: str, *params: Any) -> dict[str, Any] | None:
        with self.pool.connection() as conn:
            return cast(dict[str, Any] | None, conn.execute(query, params).fetchone())

    def _all(self, query: str, *params: Any) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            return cast(list[dict[str, Any]], conn.execute(query, params).fetchall())

    # ------------------------------------------------------------------ payments and subscriptions

    def payment_failed(self, e: StoredEventRow) -> None:
        payment = self._one("SELECT invoice_id FROM rm_payments WHERE id = %s", e.stream_id)
        invoice = payment["invoice_id"] if payment else None
        subject = f"invoice:{invoice}" if invoice else f"payment:{e.stream_id}"
        reason = e.payload.get("failure_message") or e.payload.get("failure_code") or "no reason given"
        self.raise_alert(
            e, "payment_failed", subject, f"payment {e.stream_id} failed: {reason}", e.customer_id
        )
        self.customer_at_risk(e, e.customer_id, f"payment {e.stream_id} failed")

    def payment_succeeded(self, e: StoredEventRow) -> None:
        payment = self._one("SELECT invoice_id FROM rm_payments WHERE id = %s", e.stream_id)
        invoice = payment["invoice_id"] if payment else None
        subject = f"invoice:{invoice}" if invoice else f"payment:{e.stream_id}"
        self.resolve_alert(e, "payment_failed", subject, f"payment {e.stream_id} succeeded")
        self.customer_recovered(e, e.customer_id)

    def subscription_past_due(self, e: StoredEventRow) -> None:
        self.customer_at_risk(e, e.customer_id, f"subscription {e.stream_id} is past due")

    def subscription_recovered(self, e: StoredEventRow) -> None:
        self.customer_recovered(e, e.customer_id)

    def customer_at_risk(
        self, e: StoredEventRow, customer_id: UUID | None, why: str, at: datetime | None = None
    ) -> None:
        if customer_id is not None:
            self.raise_alert(e, "customer_at_risk", f"customer:{customer_id}", why, customer_id, at=at)

    def customer_recovered(self, e: StoredEventRow, customer_id: UUID | None) -> None:
        """Resolve `customer_at_risk` once none of its conditions holds (SPEC 4, customer health)."""
        if customer_id is None:
            return
        with self.pool.connection() as conn:
            health = get_customer(conn, customer_id, e.occurred_at.date())
        if health is not None and health["status"] != "at_risk":
            self.resolve_alert(e, "customer_at_risk", f"customer:{customer_id}", "no longer at risk")

    def subscription_canceled(self, e: StoredEventRow) -> None:
        self.raise_alert(
            e,
            "subscription_canceled",
            f"subscription:{e.stream_id}",
            f"subscription {e.stream_id} ended at {e.payload.get('ended_at')}",
            e.customer_id,
        )

    def invoice_settled(self, e: StoredEventRow) -> None:
        self.resolve_alert(
            e, "invoice_overdue", f"invoice:{e.stream_id}", f"invoice {e.type.split('.')[1].lower()}"
        )
        self.customer_recovered(e, e.customer_id)

    # ------------------------------------------------------------------ usage quotas

    def usage_changed(self, e: StoredEventRow) -> None:
        record = self._one(
            "SELECT customer_id, metric, occurred_at FROM rm_usage_records WHERE record_id = %s", e.stream_id
        )
        if record is None:
            return
        # The quota exactly as GET /v1/usage/quotas answers it for the record's period.
        with self.pool.connection() as conn:
            rows, _ = quotas(conn, record["customer_id"], record["metric"], record["occurred_at"], None, 1)
        if not rows:
            return
        quota = rows[0]
        if quota["limit"] is None:
            return
        used, limit = Decimal(str(quota["used"])), Decimal(str(quota["limit"]))
        period = f"{quota['period_start'].isoformat()}/{quota['period_end'].isoformat()}"
        for threshold in thresholds_reached(used, limit):
            subject = f"{quota['metric']}:{threshold}%:{period}"
            self.raise_alert(
                e,
                "quota_threshold",
                subject,
                f"{quota['metric']} at {used} of {limit} ({threshold}% crossed) for {period}",
                record["customer_id"],
                severity=THRESHOLD_SEVERITY[threshold],
                scope=str(record["customer_id"]),
            )

    # ------------------------------------------------------------------ the daily clock

    def clock_ticked(self, e: StoredEventRow) -> None:
        day = date.fromisoformat(str(e.payload["day"]))
        moment = datetime.combine(day, time(), tzinfo=UTC)
        for sub in self._all(
            "SELECT id FROM rm_subscriptions WHERE status = 'trialing' AND trial_end <= %s"
            " AND NOT cancel_at_period_end",
            moment,
        ):
            ctx = self._ctx(e, f"end_trial:{sub['id']}")
            self._try(partial(self.ledger.end_trial, c.EndTrial(sub["id"]), ctx))
        for sub in self._all(
            "SELECT id FROM rm_subscriptions WHERE status <> 'canceled' AND cancel_at_period_end"
            " AND current_period_end <= %s",
            moment,
        ):
            ctx = self._ctx(e, f"end:{sub['id']}")
            self._try(
                partial(
                    self.ledger.end_subscription_at_period_end, c.EndSubscriptionAtPeriodEnd(sub["id"]), ctx
                )
            )
        for sub in self._all(
            "SELECT id FROM rm_subscriptions WHERE status IN ('active', 'past_due')"
            " AND NOT cancel_at_period_end AND current_period_end <= %s",
            moment,
        ):
            for n in range(MAX_RENEWALS_PER_TICK):
                ctx = self._ctx(e, f"renew:{sub['id']}:{n}")
                if (
                    self._try(partial(self.ledger.renew_subscription, c.RenewSubscription(sub["id"]), ctx))
                    is None
                ):
                    break
        for invoice in self._all(
            "SELECT id, customer_id, number, due_date, amount_remaining, currency FROM rm_invoices"
            " WHERE status = 'open' AND amount_remaining > 0 AND due_date < %s",
            day,
        ):
            self.raise_alert(
                e,
                "invoice_overdue",
                f"invoice:{invoice['id']}",
                f"invoice {invoice['number']} was due {invoice['due_date']}:"
                f" {invoice['amount_remaining']} {invoice['currency']} unpaid",
                invoice["customer_id"],
                at=moment,
            )
            self.customer_at_risk(
                e, invoice["customer_id"], f"invoice {invoice['number']} is overdue", at=moment
            )


class BackgroundPolicies(BackgroundLoop):
    def __init__(self, policies: Policies, poll_seconds: float) -> None:
        self.policies = policies
        super().__init__("policies", policies.run_once, poll_seconds=poll_seconds, max_idle_seconds=1.0)


def record_today(ledger: Ledger, today: date | None = None) -> Outcome:
    """The clock: record the current UTC day (a no-op when it is recorded already)."""
    day = today or datetime.now(UTC).date()
    moment = datetime.combine(day, time(), tzinfo=UTC)
    return ledger.record_clock_tick(
        c.RecordClockTick(day), c.CommandContext(occurred_at=moment, source="system", actor="clock")
    )
