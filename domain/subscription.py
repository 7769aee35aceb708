"""Subscription lifecycle. Terms (amount, interval) are copied from the plan when they start
applying, so a later plan revision never rewrites what a customer was billed under."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import event

from domain.base import LedgerAggregate
from domain.errors import CurrencyMismatch, InvalidTransition, InvalidValue, SubscriptionCanceled
from domain.money import charge
from domain.periods import months_in, period_end, trial_end
from domain.plan import Plan

TRIALING, ACTIVE, PAST_DUE, CANCELED = "trialing", "active", "past_due", "canceled"


def check_quantity(quantity: int) -> None:
    if quantity < 1:
        raise InvalidValue("quantity is at least 1", field="quantity")


class Subscription(LedgerAggregate):
    @classmethod
    def start(
        cls,
        *,
        customer_id: UUID,
        plan: Plan,
        quantity: int,
        trial_days: int | None,
        occurred_at: datetime,
        subscription_id: UUID | None = None,
    ) -> Subscription:
        plan.check_not_retired()
        check_quantity(quantity)
        charge(plan.amount, quantity)  # amount × quantity must stay a recordable amount
        days = plan.trial_days if trial_days is None else trial_days
        if days < 0:
            raise InvalidValue("trial_days cannot be negative", field="trial_days")
        ends_trial = trial_end(occurred_at, days) if days > 0 else None
        anchor = ends_trial or occurred_at
        return cls._created_with_id(
            subscription_id,
            "Started",
            customer_id=customer_id,
            plan_id=plan.id,
            plan_code=plan.code,
            currency=plan.currency,
            amount=plan.amount,
            interval=plan.interval,
            interval_count=plan.interval_count,
            quantity=quantity,
            trial_end=ends_trial,
            period_start=occurred_at,
            period_end=ends_trial or period_end(anchor, plan.months_per_period, 0),
            occurred_at=occurred_at,
        )

    @event("Started")
    def __init__(
        self,
        customer_id: UUID,
        plan_id: UUID,
        plan_code: str,
        currency: str,
        amount: int,
        interval: str,
        interval_count: int,
        quantity: int,
        trial_end: datetime | None,
        period_start: datetime,
        period_end: datetime,
        occurred_at: datetime,
    ) -> None:
        self.customer_id = customer_id
        self.plan_id = plan_id
        self.plan_code = plan_code
        self.currency = currency
        self.amount = amount
        self.interval = interval
        self.interval_count = interval_count
        self.quantity = quantity
        self.trial_end = trial_end
        self.status = TRIALING if trial_end is not None else ACTIVE
        self.started_at = occurred_at
        self.current_period_start = period_start
        self.current_period_end = period_end
        # Periods are counted from the anchor so month-end clamping never drifts.
        self.billing_anchor = trial_end or occurred_at
        self.period_index = 0
        self.cancel_at_period_end = False
        # When a scheduled cancellation takes effect: the end of the period it was requested in.
        self.cancel_at: datetime | None = None
        self.canceled_at: datetime | None = None
        self.ended_at: datetime | None = None
        self.past_due_invoice_ids: list[str] = []

    @property
    def months_per_period(self) -> int:
        return months_in(self.interval, self.interval_count)

    def check_not_canceled(self) -> None:
        if self.status == CANCELED:
            raise SubscriptionCanceled("the subscription is canceled")

    def end_trial(self, *, occurred_at: datetime | None = None) -> None:
        """Convert the trial: the subscription is active from trial_end (or earlier if told)."""
        if self.status != TRIALING or self.trial_end is None:
            raise InvalidTransition(f"a {self.status} subscription has no trial to end")
        if self.cancel_at_period_end:
            raise InvalidTransition("the trial is set to cancel at its end; it does not convert")
        at = occurred_at or self.trial_end
        self._end_trial(
            period_start=at,
            period_end=period_end(at, self.months_per_period, 0),
            occurred_at=at,
        )

    @event("TrialEnded")
    def _end_trial(self, period_start: datetime, period_end: datetime, occurred_at: datetime) -> None:
        self.status = ACTIVE
        self.trial_end = occurred_at
        self.billing_anchor = period_start
        self.period_index = 0
        self.current_period_start = period_start
        self.current_period_end = period_end

    def change(self, *, plan: Plan | None, quantity: int | None, occurred_at: datetime) -> bool:
        """Change plan and/or quantity; returns False (and records nothing) if nothing changes."""
        self.check_not_canceled()
        if quantity is not None:
            check_quantity(quantity)
        if plan is not None:
            plan.check_not_retired()
            if plan.currency != self.currency:
                raise CurrencyMismatch(
                    f"plan {plan.code} is in {plan.currency}, the subscription in {self.currency}",
                    field="plan_code",
                )
        new_quantity = quantity if quantity is not None else self.quantity
        charge(plan.amount if plan else self.amount, new_quantity)  # stays a recordable amount
        current = (self.plan_id, self.amount, self.interval, self.interval_count)
        target = (plan.id, plan.amount, plan.interval, plan.interval_count) if plan else current
        if target == current and new_quantity == self.quantity:
            return False
        _, target_amount, target_interval, target_count = target
        new_months = months_in(target_interval, target_count)
        # A new billing interval restarts the billing cycle, as Stripe does.
        restarts = new_months != self.months_per_period and self.status != TRIALING
        self._change(
            plan_id=plan.id if plan else self.plan_id,
            plan_code=plan.code if plan else self.plan_code,
            amount=target_amount,
            interval=target_interval,
            interval_count=target_count,
            quantity=new_quantity,
            period_start=occurred_at if restarts else self.current_period_start,
            period_end=period_end(occurred_at, new_months, 0) if restarts else self.current_period_end,
            occurred_at=occurred_at,
        )
        return True

    @event("Changed")
    def _change(
        self,
        plan_id: UUID,
        plan_code: str,
        amount: int,
        interval: str,
        interval_count: int,
        quantity: int,
        period_start: datetime,
        period_end: datetime,
        occurred_at: datetime,
    ) -> None:
        # A restarted cycle may begin exactly at the current period's start: its end moves.
        if period_start != self.current_period_start or period_end != self.current_period_end:
            self.billing_anchor = period_start
            self.period_index = 0
        self.plan_id = plan_id
        self.plan_code = plan_code
        self.amount = amount
        self.interval = interval
        self.interval_count = interval_count
        self.quantity = quantity
        self.current_period_start = period_start
        self.current_period_end = period_end

    def renew(self, *, occurred_at: datetime | None = None, now: datetime | None = None) -> None:
        """Start the next period at the end of the current one. `now`, when given, is when the
        renewal is asked for: a period cannot be renewed before it ends."""
        self.check_not_canceled()
        if now is not None and now < self.current_period_end:
            raise InvalidTransition(
                f"the current period ends at {self.current_period_end.isoformat()}; renew it then"
            )
        if self.status == TRIALING:
            raise InvalidTransition("a trialing subscription converts at trial_end, it does not renew")
        if self.cancel_at_period_end:
            raise InvalidTransition(
                "the subscription is set to cancel at period end; withdraw the cancellation first"
            )
        next_index = self.period_index + 1
        self._renew(
            period_start=self.current_period_end,
            period_end=period_end(self.billing_anchor, self.months_per_period, next_index),
            occurred_at=occurred_at or self.current_period_end,
        )

    @event("Renewed")
    def _renew(self, period_start: datetime, period_end: datetime, occurred_at: datetime) -> None:
        self.period_index += 1
        self.current_period_start = period_start
        self.current_period_end = period_end

    def mark_past_due(self, *, invoice_id: UUID, occurred_at: datetime) -> None:
        """An invoice of this subscription failed to be paid. Several may be outstanding."""
        if self.status not in (ACTIVE, PAST_DUE):
            raise InvalidTransition(f"a {self.status} subscription cannot become past_due")
        if str(invoice_id) in self.past_due_invoice_ids:
            raise InvalidTransition("the subscription is already past_due for this invoice")
        self._mark_past_due(invoice_id=invoice_id, occurred_at=occurred_at)

    @event("PastDue")
    def _mark_past_due(self, invoice_id: UUID, occurred_at: datetime) -> None:
        self.status = PAST_DUE
        self.past_due_invoice_ids.append(str(invoice_id))

    def recover(self, *, invoice_id: UUID, occurred_at: datetime) -> None:
        """A past-due invoice was paid: active again once no past-due invoice remains."""
        if self.status != PAST_DUE:
            raise InvalidTransition(f"a {self.status} subscription is not past_due")
        if str(invoice_id) not in self.past_due_invoice_ids:
            raise InvalidTransition("the subscription is not past_due for this invoice")
        if self.past_due_invoice_ids == [str(invoice_id)]:
            self._recover(invoice_id=invoice_id, occurred_at=occurred_at)
        else:
            self._settle_past_due_invoice(invoice_id=invoice_id, occurred_at=occurred_at)

    @event("Recovered")
    def _recover(self, invoice_id: UUID, occurred_at: datetime) -> None:
        self.status = ACTIVE
        self.past_due_invoice_ids = []

    @event("PastDueInvoiceSettled")
    def _settle_past_due_invoice(self, invoice_id: UUID, occurred_at: datetime) -> None:
        self.past_due_invoice_ids = [i for i in self.past_due_invoice_ids if i != str(invoice_id)]

    def schedule_cancellation(self, *, occurred_at: datetime) -> None:
        self.check_not_canceled()
        if self.cancel_at_period_end:
            raise InvalidTransition("the cancellation is already scheduled")
        self._schedule_cancellation(ends_at=self.current_period_end, occurred_at=occurred_at)

    @event("CancellationScheduled")
    def _schedule_cancellation(self, ends_at: datetime, occurred_at: datetime) -> None:
        self.cancel_at_period_end = True
        self.cancel_at = ends_at
        self.canceled_at = occurred_at

    def withdraw_cancellation(self, *, occurred_at: datetime) -> None:
        self.check_not_canceled()
        if not self.cancel_at_period_end:
            raise InvalidTransition("no cancellation is scheduled")
        self._withdraw_cancellation(occurred_at=occurred_at)

    @event("CancellationWithdrawn")
    def _withdraw_cancellation(self, occurred_at: datetime) -> None:
        self.cancel_at_period_end = False
        self.cancel_at = None
        self.canceled_at = None

    def cancel_now(self, *, occurred_at: datetime) -> None:
        self.check_not_canceled()
        self._cancel(ended_at=occurred_at, occurred_at=occurred_at)

    def end_at_period_end(self, *, now: datetime | None = None) -> None:
        """Carry out a scheduled cancellation when the period it was requested in ends."""
        self.check_not_canceled()
        if not self.cancel_at_period_end:
            raise InvalidTransition("no cancellation is scheduled")
        ends_at = self.cancel_at or self.current_period_end
        if now is not None and now < ends_at:
            raise InvalidTransition(f"the cancellation takes effect at {ends_at.isoformat()}, not before")
        self._cancel(ended_at=ends_at, occurred_at=ends_at)

    @event("Canceled")
    def _cancel(self, ended_at: datetime, occurred_at: datetime) -> None:
        self.status = CANCELED
        self.canceled_at = self.canceled_at or occurred_at
        self.ended_at = ended_at
        self.cancel_at_period_end = False
        self.past_due_invoice_ids = []
