"""Policies (process managers): they follow the log and issue commands.

- a failed payment raises a critical `payment_failed` alert (subject: its invoice); a later
  success for that invoice, or the invoice being paid, voided or written off, resolves it;
- `customer_at_risk` follows the customer's health (SPEC 4: a past_due subscription, an overdue
  invoice or an unresolved failed payment): every event that can change it raises or resolves it;
- a canceled subscription raises `subscription_canceled` (churn);
- usage crossing 80%, 95% and 100% of a quota raises one `quota_threshold` alert each per period
  (and per group, for a quota that groups by a usage property);
- each daily clock tick raises `invoice_overdue` for open invoices past their due date (paying,
  voiding or writing the invoice off resolves it), and `customer_inactive` for customers with a
  live subscription and no usage for `inactivity_days` (their next usage resolves it).
Time-driven transitions (trials, renewals, scheduled cancellations) are not policies: the
subscriptions record them themselves, through the ledger's clock (`Ledger.advance_due`).

Every command carries an idempotency key derived from the triggering event's position and the
action, so an event handled twice (a crash before the checkpoint moved) changes nothing. Alerts
have one id per type and subject: a condition that comes back reopens its alert, so at most one
is open. Whether an alert is open is decided by the alert itself (the use case loads it), never
by the alerts read model, which has not yet applied what this very batch raised. The policies act
only on events the core read models have applied, so the rows they read for invoices,
subscriptions and usage are at least as new as the event handled; a later event that changes a
condition is handled later and decides again, so an alert always ends up following its condition.
The checkpoint is the `policies` row of the projector checkpoints."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, cast
from uuid import UUID

from psycopg_pool import ConnectionPool

from application import commands as c
from application.ledger import Ledger
from application.outcome import Outcome
from domain import ids
from domain.alert import DEFAULT_SEVERITY
from domain.dunning import CHARGE_AUTOMATICALLY, FINAL, RETRY
from domain.errors import ChangeOutOfOrder, DomainError
from domain.metrics import THRESHOLD_SEVERITY, thresholds_reached
from domain.usage import usage_group
from infra.background import BackgroundLoop
from projections import inactivity
from projections.checkpoints import STORE_PARTITION, applied_position, lock_checkpoint, save_checkpoint
from projections.core import StoredEventRow
from projections.metric_queries import quotas
from projections.queries import get_customer
from projections.runner import read_range

log = logging.getLogger(__name__)

POLICIES = "policies"
SOURCE = "policy"
BATCH = 500


class Policies:
    def __init__(
        self,
        pool: ConnectionPool,
        ledger: Ledger,
        core: str = "core",
        inactivity_days: int = 30,
        *,
        collect: bool = False,
    ) -> None:
        self.pool = pool
        self.ledger = ledger
        self.core = core
        self.inactivity_days = inactivity_days
        self.collect = collect  # a payment backend is configured: the ledger collects payments
        self.handlers: dict[str, Callable[[StoredEventRow], None]] = {
            "Payment.Failed": self.payment_failed,
            "Payment.Succeeded": self.payment_succeeded,
            "Payment.Retried": self.health_may_change,
            "Subscription.PastDue": self.health_may_change,
            "Subscription.Recovered": self.health_may_change,
            "Subscription.PastDueInvoiceSettled": self.health_may_change,
            "Subscription.Canceled": self.subscription_canceled,
            "Invoice.Paid": self.invoice_settled,
            "Invoice.Voided": self.invoice_settled,
            "Invoice.MarkedUncollectible": self.invoice_settled,
            "UsageRecord.Recorded": self.usage_changed,
            "UsageRecord.Corrected": self.usage_changed,
            "ClockTick.Ticked": self.clock_ticked,
            "Invoice.Finalized": self.invoice_finalized,
            "Invoice.DunningStepTaken": self.dunning_step_taken,
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

    def _try(self, command: Callable[[], Outcome | None]) -> Outcome | None:
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
        """Resolve the alert if it is open; the alert itself refuses when it is not (or never was)."""
        alert_id = ids.alert_id(alert_type, subject)
        ctx = self._ctx(trigger, f"resolve:{alert_type}:{subject}")
        self._try(lambda: self.ledger.resolve_alert(c.ResolveAlert(alert_id, note), ctx))

    def _one(self, query: str, *params: Any) -> dict[str, Any] | None:
        with self.pool.connection() as conn:
            return cast(dict[str, Any] | None, conn.execute(query, params).fetchone())

    def _all(self, query: str, *params: Any) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            return cast(list[dict[str, Any]], conn.execute(query, params).fetchall())

    # ------------------------------------------------------------------ collections and dunning

    def invoice_finalized(self, e: StoredEventRow) -> None:
        """An automatically collected invoice: its first attempt to collect."""
        if self.collect and e.payload.get("collection_method") == CHARGE_AUTOMATICALLY:
            self._start_collection(e, attempt=1)

    def dunning_step_taken(self, e: StoredEventRow) -> None:
        """A retry step: the next attempt to collect; the final step: the final action."""
        action = e.payload["action"]
        if action == RETRY and self.collect:
            self._start_collection(e, attempt=e.payload["step"] + 1)
        elif action == FINAL:
            self._take_final_action(e, e.payload.get("final_action") or "none")

    def _start_collection(self, e: StoredEventRow, attempt: int) -> None:
        cmd = c.StartCollection(invoice_id=e.stream_id, attempt=attempt)
        ctx = self._ctx(e, f"collect:{attempt}")
        self._try(lambda: self.ledger.start_collection(cmd, ctx))

    def _take_final_action(self, e: StoredEventRow, final_action: str) -> None:
        if final_action == "mark_uncollectible":
            ctx = self._ctx(e, "dunning:mark_uncollectible")
            self._try(
                lambda: self.ledger.mark_invoice_uncollectible(c.MarkInvoiceUncollectible(e.stream_id), ctx)
            )
        elif final_action == "cancel_subscription":
            invoice = self._one("SELECT subscription_id FROM rm_invoices WHERE id = %s", e.stream_id)
            if invoice is None or invoice["subscription_id"] is None:
                return
            cancel = c.CancelSubscription(
                invoice["subscription_id"], at_period_end=False, proration_behavior="none"
            )
            try:
                self.ledger.cancel_subscription(cancel, self._ctx(e, "dunning:cancel"))
            except ChangeOutOfOrder:
                # The subscription has moved on past the step's moment (the clock was far ahead):
                # it ends now instead.
                ctx = self._ctx(e, "dunning:cancel-late", self.ledger.now())
                self._try(lambda: self.ledger.cancel_subscription(cancel, ctx))
            except DomainError as refused:
                log.debug("dunning's cancellation refused: %s", refused)

    # ------------------------------------------------------------------ payments and subscriptions

    def _payment_subject(self, e: StoredEventRow) -> str:
        payment = self._one("SELECT invoice_id FROM rm_payments WHERE id = %s", e.stream_id)
        invoice = payment["invoice_id"] if payment else None
        return f"invoice:{invoice}" if invoice else f"payment:{e.stream_id}"

    def payment_failed(self, e: StoredEventRow) -> None:
        reason = e.payload.get("failure_message") or e.payload.get("failure_code") or "no reason given"
        self.raise_alert(
            e,
            "payment_failed",
            self._payment_subject(e),
            f"payment {e.stream_id} failed: {reason}",
            e.customer_id,
        )
        self.health_may_change(e)

    def payment_succeeded(self, e: StoredEventRow) -> None:
        self.resolve_alert(e, "payment_failed", self._payment_subject(e), f"payment {e.stream_id} succeeded")
        self.health_may_change(e)

    def health_may_change(self, e: StoredEventRow) -> None:
        self.follow_health(e, e.customer_id)

    def follow_health(self, e: StoredEventRow, customer_id: UUID | None, at: datetime | None = None) -> None:
        """Raise `customer_at_risk` while the customer's health says at_risk, resolve it otherwise
        (SPEC 4, customer health, as GET /v1/customers/{id} answers it)."""
        if customer_id is None:
            return
        with self.pool.connection() as conn:
            health = get_customer(conn, customer_id, self.ledger.now().date())
        subject = f"customer:{customer_id}"
        if health is not None and health["status"] == "at_risk":
            why = f"customer {customer_id} is at risk after {e.type} of {e.stream_id}"
            self.raise_alert(e, "customer_at_risk", subject, why, customer_id, at=at)
        else:
            self.resolve_alert(e, "customer_at_risk", subject, "no longer at risk")

    def subscription_canceled(self, e: StoredEventRow) -> None:
        self.raise_alert(
            e,
            "subscription_canceled",
            f"subscription:{e.stream_id}",
            f"subscription {e.stream_id} ended at {e.payload.get('ended_at')}",
            e.customer_id,
        )
        self.health_may_change(e)

    def invoice_settled(self, e: StoredEventRow) -> None:
        outcome = e.type.split(".")[1].lower()
        self.resolve_alert(e, "invoice_overdue", f"invoice:{e.stream_id}", f"invoice {outcome}")
        self.resolve_alert(e, "payment_failed", f"invoice:{e.stream_id}", f"invoice {outcome}")
        self.health_may_change(e)

    # ------------------------------------------------------------------ usage quotas

    def usage_changed(self, e: StoredEventRow) -> None:
        record = self._one(
            "SELECT customer_id, metric, occurred_at, properties FROM rm_usage_records WHERE record_id = %s",
            e.stream_id,
        )
        if record is None:
            return
        inactivity.usage_resumed(self, e, record["customer_id"], record["occurred_at"])
        # The quota exactly as GET /v1/usage/quotas answers it for the record's period (and its
        # group, where the quota groups by a usage property).
        with self.pool.connection() as conn:
            at = record["customer_id"], record["metric"], record["occurred_at"]
            rows, _ = quotas(conn, *at, None, 1)
            group_by = rows[0]["group_by"] if rows else None
            if group_by is not None:
                rows, _ = quotas(conn, *at, None, 1, group=usage_group(record["properties"], group_by))
        if not rows:
            return
        quota = rows[0]
        if quota["limit"] is None:
            return
        used, limit = Decimal(str(quota["used"])), Decimal(str(quota["limit"]))
        period = f"{quota['period_start'].isoformat()}/{quota['period_end'].isoformat()}"
        # A group is named in the subject (so each group has its alerts); an ungrouped quota's
        # subject stays as it always was.
        metric = quota["metric"] if group_by is None else f"{quota['metric']}:{group_by}={quota['group']}"
        for threshold in thresholds_reached(used, limit):
            subject = f"{metric}:{threshold}%:{period}"
            self.raise_alert(
                e,
                "quota_threshold",
                subject,
                f"{metric} at {used} of {limit} ({threshold}% crossed) for {period}",
                record["customer_id"],
                severity=THRESHOLD_SEVERITY[threshold],
                scope=str(record["customer_id"]),
            )

    # ------------------------------------------------------------------ the daily clock

    def clock_ticked(self, e: StoredEventRow) -> None:
        day = date.fromisoformat(str(e.payload["day"]))
        moment = datetime.combine(day, time(), tzinfo=UTC)
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
            self.follow_health(e, invoice["customer_id"], at=moment)
        inactivity.check_inactive(self, e, moment)


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
