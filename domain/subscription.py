"""Subscription lifecycle. Terms (amount, interval) are copied from the plan when they start
applying, so a later plan revision never rewrites what a customer was billed under; the same
holds for its add-on items (SPEC 10), each a plan's terms × quantity billed beside the plan in
the subscription's currency and billing interval."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain import ids
from domain.base import TimeDriven
from domain.coupon import redeemed
from domain.errors import (
    ChangeOutOfOrder,
    CurrencyMismatch,
    IntervalMismatch,
    InvalidTransition,
    InvalidValue,
    ItemExists,
    SubscriptionCanceled,
    UnknownItem,
)
from domain.money import charge
from domain.periods import months_in, period_containing, period_end, trial_end
from domain.plan import Plan
from domain.proration import check_behavior, proration

TRIALING, ACTIVE, PAST_DUE, CANCELED = "trialing", "active", "past_due", "canceled"
BILLED_BY = ("ledger", "external")
LAST_INSTANT = timedelta(microseconds=1)  # a period [start, end) holds end - LAST_INSTANT
# As Stripe: a subscription holds at most 20 items; beyond, the invoices and events of one change
# grow without a use.
MAX_ITEMS = 20


def check_quantity(quantity: int) -> None:
    if quantity < 1:
        raise InvalidValue("quantity is at least 1", field="quantity")


class Subscription(TimeDriven):
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
        billed_by: str = "ledger",
    ) -> Subscription:
        """`billed_by` "ledger" (the ledger invoices it, SPEC 7) or "external" (its invoices come
        from elsewhere: a payment provider it is mirrored from, or hand-made invoices)."""
        if billed_by not in BILLED_BY:
            raise InvalidValue("billed_by is ledger or external", field="billed_by")
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
            billed_by=billed_by,
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
        billed_by: str = "ledger",
    ) -> None:
        self.customer_id = customer_id
        self.billed_by = billed_by
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
        # The latest change decided by a command (not by the clock): nothing may take effect before it.
        self.last_changed_at = occurred_at
        # What was billed: the fee of each period (by its start) and the usage of each metric and
        # period, so that late usage and backdated changes are billed as differences, once.
        self.billed_fees: dict[str, dict[str, Any]] = {}
        self.billed_usage: dict[str, dict[str, Any]] = {}
        self.usage_seen_position = 0
        # Draft invoices waiting for the end of their grace period: invoice id -> finalize at.
        self.drafts: dict[str, datetime] = {}
        # Every invoice the ledger made for it: a period is billed once.
        self.invoiced: set[str] = set()
        # Proration lines waiting for the next invoice.
        self.pending_items: list[dict[str, Any]] = []
        # A coupon applied to this subscription's invoices.
        self.discount: dict[str, Any] | None = None
        self.cancel_at_period_end = False
        # When a scheduled cancellation takes effect: the end of the period it was requested in.
        self.cancel_at: datetime | None = None
        self.canceled_at: datetime | None = None
        self.ended_at: datetime | None = None
        self.past_due_invoice_ids: list[str] = []
        # Add-on items besides the plan (SPEC 10), by item id: their terms copied from their plan
        # when added, billed with the plan fee on each period's invoice.
        self.items: dict[str, dict[str, Any]] = {}
        self.items_added = 0  # every item ever added, so a new one never takes an old one's id

    @property
    def months_per_period(self) -> int:
        return months_in(self.interval, self.interval_count)

    # ------------------------------------------------------------------ time

    def in_trial_at(self, moment: datetime) -> bool:
        return self.trial_end is not None and moment < self.trial_end

    def period_at(self, moment: datetime) -> tuple[datetime, datetime]:
        """The billing period holding `moment`, a pure function of the terms in force and time:
        the trial, then periods anniversary-based from the billing anchor."""
        if self.trial_end is not None and moment < self.trial_end:
            return self.started_at, self.trial_end
        return period_containing(self.billing_anchor, self.months_per_period, moment)

    @property
    def next_due_at(self) -> datetime | None:
        """When the ledger's clock next has something to do here: a transition, or one of the
        subscription's draft invoices to finalize at the end of its grace period."""
        candidates = [at for at in (self.next_transition_at, self.next_draft_due_at) if at is not None]
        return min(candidates) if candidates else None

    @property
    def next_draft_due_at(self) -> datetime | None:
        return min(self.drafts.values()) if self.drafts else None

    @property
    def next_transition_at(self) -> datetime | None:
        """When the next time-driven transition falls due (None once canceled)."""
        if self.status == CANCELED:
            return None
        if self.status == TRIALING:
            return self.trial_end
        if self.cancel_at is not None and self.cancel_at <= self.current_period_end:
            return self.cancel_at
        return self.current_period_end

    def advance(self, now: datetime) -> int:
        """Record every time-driven transition due by `now`, each at the moment it fell due: the
        trial ending (or its scheduled cancellation), scheduled cancellations taking effect, periods
        renewing. Returns how many were recorded."""
        recorded = 0
        while (due := self.next_transition_at) is not None and due <= now:
            if self.status == TRIALING:
                if self.cancel_at is not None:
                    self._end(due)
                else:
                    start, end = period_containing(due, self.months_per_period, due)
                    self._end_trial(period_start=start, period_end=end, occurred_at=due)
            elif self.cancel_at is not None and self.cancel_at == due:
                self._end(due)
            else:
                start, end = period_containing(self.billing_anchor, self.months_per_period, due)
                self._renew(period_start=start, period_end=end, occurred_at=due)
            recorded += 1
        return recorded

    def check_effective(self, moment: datetime) -> None:
        """A change takes effect in the subscription's lifetime, and not before its last change:
        what a backdated command decides must not depend on terms that came later."""
        if moment < self.started_at:
            raise InvalidValue(
                f"the subscription started at {self.started_at.isoformat()}; effective_at is before it",
                field="effective_at",
            )
        if moment < self.last_changed_at:
            raise ChangeOutOfOrder(
                f"the subscription last changed at {self.last_changed_at.isoformat()};"
                " a change cannot take effect before it",
                field="effective_at",
            )

    def check_not_canceled(self) -> None:
        if self.status == CANCELED:
            raise SubscriptionCanceled("the subscription is canceled")

    # ------------------------------------------------------------------ commands

    def end_trial(self, *, occurred_at: datetime | None = None) -> None:
        """Convert the trial: the subscription is active from trial_end (or earlier if told)."""
        if self.status != TRIALING or self.trial_end is None:
            raise InvalidTransition(f"a {self.status} subscription has no trial to end")
        if self.cancel_at_period_end:
            raise InvalidTransition("the trial is set to cancel at its end; it does not convert")
        at = occurred_at or self.trial_end
        self.check_effective(at)
        self._end_trial(
            period_start=at,
            period_end=period_end(at, self.months_per_period, 0),
            occurred_at=at,
        )

    @event("TrialEnded")
    def _end_trial(self, period_start: datetime, period_end: datetime, occurred_at: datetime) -> None:
        if self.trial_end is not None and occurred_at < self.trial_end:
            self.last_changed_at = occurred_at  # converted early: a decision, not the clock
        self.status = ACTIVE
        self.trial_end = occurred_at
        self.billing_anchor = occurred_at
        self.current_period_start = period_start
        self.current_period_end = period_end

    def change(
        self,
        *,
        plan: Plan | None,
        quantity: int | None,
        occurred_at: datetime,
        proration_behavior: str = "create_prorations",
    ) -> bool:
        """Change plan and/or quantity; returns False (and records nothing) if nothing changes.
        Unless `proration_behavior` is none, what was billed for the rest of the period at the
        old terms is credited and the new terms charged for it, by the second (SPEC 7)."""
        check_behavior(proration_behavior)
        self.check_not_canceled()
        self.check_effective(occurred_at)
        if quantity is not None:
            check_quantity(quantity)
        if plan is not None:
            plan.check_not_retired()
            if plan.currency != self.currency:
                raise CurrencyMismatch(
                    f"plan {plan.code} is in {plan.currency}, the subscription in {self.currency}",
                    field="plan_code",
                )
            if any(item["plan_code"] == plan.code for item in self.items.values()):
                raise ItemExists(
                    f"plan {plan.code} is an add-on item of this subscription: remove it first",
                    field="plan_code",
                )
            if self.items and plan.months_per_period != self.months_per_period:
                raise IntervalMismatch(
                    f"plan {plan.code} bills every {plan.months_per_period} month(s), the subscription's"
                    f" add-on items every {self.months_per_period}: remove them first",
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
        period_start, period_end_ = self.current_period_start, self.current_period_end
        restarts = False
        if new_months != self.months_per_period:
            if self.in_trial_at(occurred_at):
                # The trial runs on; periods after it follow the new interval from its end.
                period_start, period_end_ = self.period_at(occurred_at)
            else:
                # A new billing interval restarts the billing cycle, as Stripe does.
                period_start, period_end_ = occurred_at, period_end(occurred_at, new_months, 0)
                restarts = True
        new_plan_name = plan.name if plan else self.plan_code
        prorations = (
            []
            if proration_behavior == "none"
            else self._prorations(
                at=occurred_at,
                new_amount=None if restarts else target_amount * new_quantity,
                new_terms=f"{new_plan_name} × {new_quantity}",
            )
        )
        self._change(
            plan_id=plan.id if plan else self.plan_id,
            plan_code=plan.code if plan else self.plan_code,
            amount=target_amount,
            interval=target_interval,
            interval_count=target_count,
            quantity=new_quantity,
            period_start=period_start,
            period_end=period_end_,
            occurred_at=occurred_at,
            proration_behavior=proration_behavior,
            prorations=prorations,
        )
        return True

    def _prorations(
        self, *, at: datetime, new_amount: int | None, new_terms: str, item_id: str | None = None
    ) -> list[dict[str, Any]]:
        """What billing owes back and owes more for a change at `at` of the plan's terms (or of
        add-on item `item_id`'s): for the period holding it, a credit of what was billed for its
        unused seconds and (unless the cycle restarts, which bills a new period) a charge of the
        new terms for them; for any later period already billed (a backdated change), its whole
        fee back and the new one. Periods not billed (a trial, a subscription billed elsewhere,
        an item not billed in that period) owe nothing back."""
        items: list[dict[str, Any]] = []
        for start_text, period_billed in sorted(self.billed_fees.items()):
            start = datetime.fromisoformat(start_text)
            end = datetime.fromisoformat(period_billed["period_end"])
            if end <= at:
                continue
            billed = period_billed if item_id is None else period_billed.get("items", {}).get(item_id)
            split = proration(
                old_amount=int(billed["amount"]) if billed else 0,
                new_amount=new_amount or 0,
                period_start=start,
                period_end=end,
                at=max(at, start),
            )
            period = {"period_start": max(at, start).isoformat(), "period_end": end.isoformat()}
            of_item = {} if item_id is None else {"item_id": item_id}
            if split.credit and billed:
                items.append(
                    {
                        "kind": "proration",
                        "description": f"Unused time on {billed['terms']}",
                        "amount": split.credit,
                        **period,
                        "source": {
                            "subscription_id": str(self.id),
                            "billed_on": period_billed["invoice_id"],
                            **of_item,
                        },
                    }
                )
            if new_amount is not None and split.charge:
                items.append(
                    {
                        "kind": "proration",
                        "description": f"Remaining time on {new_terms}",
                        "amount": split.charge,
                        **period,
                        "source": {"subscription_id": str(self.id), "terms": new_terms, **of_item},
                    }
                )
        return items

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
        proration_behavior: str = "create_prorations",
        prorations: list[dict[str, Any]] | None = None,
    ) -> None:
        self.pending_items = [*self.pending_items, *copy.deepcopy(prorations or [])]
        restarted = months_in(interval, interval_count) != self.months_per_period and not self.in_trial_at(
            occurred_at
        )
        if proration_behavior != "none":
            # From now on each billed period counts as billed at the new terms (what the proration
            # lines settle), so a second change in the same period credits what the first charged.
            terms = {"amount": 0 if restarted else amount * quantity, "terms": f"{plan_code} × {quantity}"}
            self.billed_fees = {
                start: (
                    {**billed, **terms}
                    if datetime.fromisoformat(billed["period_end"]) > occurred_at
                    else billed
                )
                for start, billed in self.billed_fees.items()
            }
        if restarted:
            self.billing_anchor = period_start
        self.plan_id = plan_id
        self.plan_code = plan_code
        self.amount = amount
        self.interval = interval
        self.interval_count = interval_count
        self.quantity = quantity
        self.current_period_start = period_start
        self.current_period_end = period_end
        self.last_changed_at = occurred_at

    def renew(self, *, now: datetime) -> None:
        """Record the renewals due by `now`; refused when no period has ended yet."""
        self.check_not_canceled()
        if self.status == TRIALING:
            raise InvalidTransition("a trialing subscription converts at trial_end, it does not renew")
        if self.cancel_at_period_end:
            raise InvalidTransition(
                "the subscription is set to cancel at period end; withdraw the cancellation first"
            )
        if now < self.current_period_end:
            raise InvalidTransition(
                f"the current period ends at {self.current_period_end.isoformat()}; renew it then"
            )
        self.advance(now)

    @event("Renewed")
    def _renew(self, period_start: datetime, period_end: datetime, occurred_at: datetime) -> None:
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
        """Cancel at the end of the period holding `occurred_at` (the trial's end during a trial)."""
        self.check_not_canceled()
        self.check_effective(occurred_at)
        if self.cancel_at_period_end:
            raise InvalidTransition("the cancellation is already scheduled")
        self._schedule_cancellation(ends_at=self.period_at(occurred_at)[1], occurred_at=occurred_at)

    @event("CancellationScheduled")
    def _schedule_cancellation(self, ends_at: datetime, occurred_at: datetime) -> None:
        self.cancel_at_period_end = True
        self.cancel_at = ends_at
        self.canceled_at = occurred_at
        self.last_changed_at = occurred_at

    def withdraw_cancellation(self, *, occurred_at: datetime) -> None:
        self.check_not_canceled()
        self.check_effective(occurred_at)
        if not self.cancel_at_period_end:
            raise InvalidTransition("no cancellation is scheduled")
        self._withdraw_cancellation(occurred_at=occurred_at)

    @event("CancellationWithdrawn")
    def _withdraw_cancellation(self, occurred_at: datetime) -> None:
        self.cancel_at_period_end = False
        self.cancel_at = None
        self.canceled_at = None
        self.last_changed_at = occurred_at

    def cancel_now(self, *, occurred_at: datetime, proration_behavior: str = "create_prorations") -> None:
        """End now. Unless `proration_behavior` is none, what was billed for the time after it
        (plan and add-on items) is credited on the subscription's final invoice."""
        check_behavior(proration_behavior)
        self.check_not_canceled()
        self.check_effective(occurred_at)
        start, end = self.period_at(occurred_at)
        prorations: list[dict[str, Any]] = []
        if proration_behavior != "none":
            # What was billed beyond now: for the plan, and for each add-on item.
            for item_id in (None, *self.items):
                prorations += self._prorations(at=occurred_at, new_amount=None, new_terms="", item_id=item_id)
        self._cancel(
            ended_at=occurred_at,
            occurred_at=occurred_at,
            period_start=start,
            period_end=end,
            prorations=prorations,
        )

    def end_at_period_end(self, *, now: datetime) -> None:
        """Carry out a scheduled cancellation once the period it was requested in has ended."""
        self.check_not_canceled()
        if not self.cancel_at_period_end or self.cancel_at is None:
            raise InvalidTransition("no cancellation is scheduled")
        if now < self.cancel_at:
            raise InvalidTransition(
                f"the cancellation takes effect at {self.cancel_at.isoformat()}, not before"
            )
        self.advance(now)

    def _end(self, at: datetime) -> None:
        """A scheduled cancellation takes effect at the end of its period (the trial's, in a trial)."""
        start, end = self.period_at(at - LAST_INSTANT)
        self._cancel(ended_at=at, occurred_at=at, period_start=start, period_end=end)

    @event("Canceled")
    def _cancel(
        self,
        ended_at: datetime,
        occurred_at: datetime,
        period_start: datetime | None = None,
        period_end: datetime | None = None,
        prorations: list[dict[str, Any]] | None = None,
    ) -> None:
        self.pending_items = [*self.pending_items, *copy.deepcopy(prorations or [])]
        # The period it ended in (events recorded before this rule carry none).
        if period_start is not None and period_end is not None:
            self.current_period_start, self.current_period_end = period_start, period_end
        self.status = CANCELED
        self.canceled_at = self.canceled_at or occurred_at
        self.ended_at = ended_at
        self.cancel_at_period_end = False
        self.past_due_invoice_ids = []
        self.last_changed_at = max(self.last_changed_at, occurred_at)

    # ------------------------------------------------------------------ add-on items

    def check_item(self, item_id: UUID | str) -> dict[str, Any]:
        item = self.items.get(str(item_id))
        if item is None:
            raise UnknownItem(f"subscription {self.id} has no add-on item {item_id}")
        return item

    def check_add_on(self, plan: Plan) -> None:
        """An add-on is a plan that is not retired, in the subscription's currency, billed every
        period of the subscription, and not on it already (its own plan included)."""
        plan.check_not_retired()
        if plan.code == self.plan_code or any(i["plan_code"] == plan.code for i in self.items.values()):
            raise ItemExists(
                f"plan {plan.code} is already on subscription {self.id}: change that item's quantity",
                field="plan_code",
            )
        if plan.currency != self.currency:
            raise CurrencyMismatch(
                f"add-on {plan.code} is in {plan.currency}, the subscription in {self.currency}",
                field="plan_code",
            )
        if plan.months_per_period != self.months_per_period:
            raise IntervalMismatch(
                f"add-on {plan.code} bills every {plan.months_per_period} month(s), the subscription"
                f" every {self.months_per_period}",
                field="plan_code",
            )
        if len(self.items) >= MAX_ITEMS:
            raise InvalidValue(f"a subscription carries at most {MAX_ITEMS} add-on items", field="plan_code")

    def add_item(
        self,
        *,
        plan: Plan,
        quantity: int,
        occurred_at: datetime,
        proration_behavior: str = "create_prorations",
    ) -> UUID:
        """Add an add-on item (a plan's terms × quantity) from `occurred_at`; answers its id.
        Unless `proration_behavior` is none, the rest of the period already billed is charged
        for it, by the second (SPEC 7)."""
        check_behavior(proration_behavior)
        self.check_not_canceled()
        self.check_effective(occurred_at)
        check_quantity(quantity)
        self.check_add_on(plan)
        total = charge(plan.amount, quantity)
        item_id = ids.subscription_item_id(self.id, self.items_added + 1)
        prorations = (
            []
            if proration_behavior == "none"
            else self._prorations(
                at=occurred_at,
                new_amount=total,
                new_terms=item_terms(plan.name, quantity),
                item_id=str(item_id),
            )
        )
        self._add_item(
            item_id=item_id,
            plan_id=plan.id,
            plan_code=plan.code,
            name=plan.name,
            amount=plan.amount,
            interval=plan.interval,
            interval_count=plan.interval_count,
            quantity=quantity,
            occurred_at=occurred_at,
            proration_behavior=proration_behavior,
            prorations=prorations,
        )
        return item_id

    @event("ItemAdded")
    def _add_item(
        self,
        item_id: UUID,
        plan_id: UUID,
        plan_code: str,
        name: str,
        amount: int,
        interval: str,
        interval_count: int,
        quantity: int,
        occurred_at: datetime,
        proration_behavior: str = "create_prorations",
        prorations: list[dict[str, Any]] | None = None,
    ) -> None:
        item = {
            "id": str(item_id),
            "plan_id": str(plan_id),
            "plan_code": plan_code,
            "name": name,
            "amount": amount,
            "interval": interval,
            "interval_count": interval_count,
            "quantity": quantity,
            "added_at": occurred_at,
        }
        self.items = {**self.items, str(item_id): item}
        self.items_added += 1
        self._item_changed(str(item_id), amount * quantity, occurred_at, proration_behavior, prorations)

    def change_item_quantity(
        self,
        *,
        item_id: UUID,
        quantity: int,
        occurred_at: datetime,
        proration_behavior: str = "create_prorations",
    ) -> bool:
        """Set an add-on item's quantity; returns False (and records nothing) if it is already
        that. Prorated as a change of the plan's quantity is."""
        check_behavior(proration_behavior)
        self.check_not_canceled()
        item = self.check_item(item_id)
        self.check_effective(occurred_at)
        check_quantity(quantity)
        if quantity == item["quantity"]:
            return False
        total = charge(item["amount"], quantity)
        prorations = (
            []
            if proration_behavior == "none"
            else self._prorations(
                at=occurred_at,
                new_amount=total,
                new_terms=item_terms(item["name"], quantity),
                item_id=item["id"],
            )
        )
        self._change_item_quantity(
            item_id=UUID(item["id"]),
            plan_code=item["plan_code"],
            amount=item["amount"],
            interval=item["interval"],
            interval_count=item["interval_count"],
            quantity=quantity,
            occurred_at=occurred_at,
            proration_behavior=proration_behavior,
            prorations=prorations,
        )
        return True

    @event("ItemQuantityChanged")
    def _change_item_quantity(
        self,
        item_id: UUID,
        plan_code: str,
        amount: int,
        interval: str,
        interval_count: int,
        quantity: int,
        occurred_at: datetime,
        proration_behavior: str = "create_prorations",
        prorations: list[dict[str, Any]] | None = None,
    ) -> None:
        # The item's terms travel with the event so that it alone says what the item is worth.
        key = str(item_id)
        self.items = {**self.items, key: {**self.items[key], "quantity": quantity}}
        self._item_changed(key, amount * quantity, occurred_at, proration_behavior, prorations)

    def remove_item(
        self, *, item_id: UUID, occurred_at: datetime, proration_behavior: str = "create_prorations"
    ) -> None:
        """Take an add-on item off from `occurred_at`. Unless `proration_behavior` is none, what
        was billed for it beyond that moment is credited on the next invoice."""
        check_behavior(proration_behavior)
        self.check_not_canceled()
        item = self.check_item(item_id)
        self.check_effective(occurred_at)
        prorations = (
            []
            if proration_behavior == "none"
            else self._prorations(at=occurred_at, new_amount=None, new_terms="", item_id=item["id"])
        )
        self._remove_item(
            item_id=UUID(item["id"]),
            plan_code=item["plan_code"],
            occurred_at=occurred_at,
            proration_behavior=proration_behavior,
            prorations=prorations,
        )

    @event("ItemRemoved")
    def _remove_item(
        self,
        item_id: UUID,
        plan_code: str,
        occurred_at: datetime,
        proration_behavior: str = "create_prorations",
        prorations: list[dict[str, Any]] | None = None,
    ) -> None:
        self.items = {k: v for k, v in self.items.items() if k != str(item_id)}
        self._item_changed(str(item_id), 0, occurred_at, proration_behavior, prorations)

    def _item_changed(
        self,
        item_id: str,
        amount: int,
        occurred_at: datetime,
        proration_behavior: str,
        prorations: list[dict[str, Any]] | None,
    ) -> None:
        """What every item event does beside the item: its proration lines wait for the next
        invoice and, prorated, each billed period counts as billed at the item's new terms from
        then on (so a second change in the period credits what the first charged)."""
        self.pending_items = [*self.pending_items, *copy.deepcopy(prorations or [])]
        if proration_behavior != "none":
            item = self.items.get(item_id)
            terms = item_terms(item["name"], item["quantity"]) if item else ""
            self.billed_fees = {
                start: (
                    {
                        **billed,
                        "items": {**billed.get("items", {}), item_id: {"amount": amount, "terms": terms}},
                    }
                    if datetime.fromisoformat(billed["period_end"]) > occurred_at
                    else billed
                )
                for start, billed in self.billed_fees.items()
            }
        self.last_changed_at = occurred_at

    # ------------------------------------------------------------------ billing memory

    def record_invoice(
        self,
        *,
        invoice_id: UUID,
        finalize_at: datetime,
        fee: dict[str, Any] | None,
        used_pending: bool,
        used_discount: bool,
        occurred_at: datetime,
    ) -> None:
        """An invoice was drafted for this subscription: the fee it bills in advance (for the
        period starting `fee["period_start"]`), the proration lines and discount it used."""
        self._record_invoice(
            invoice_id=invoice_id,
            finalize_at=finalize_at,
            fee=fee,
            used_pending=used_pending,
            used_discount=used_discount,
            occurred_at=occurred_at,
        )

    @event("InvoiceDrafted")
    def _record_invoice(
        self,
        invoice_id: UUID,
        finalize_at: datetime,
        fee: dict[str, Any] | None,
        used_pending: bool,
        used_discount: bool,
        occurred_at: datetime,
    ) -> None:
        self.drafts = {**self.drafts, str(invoice_id): finalize_at}
        self.invoiced = {*self.invoiced, str(invoice_id)}
        if fee is not None:
            self.billed_fees = {
                **self.billed_fees,
                fee["period_start"]: {**fee, "invoice_id": str(invoice_id)},
            }
        if used_pending:
            self.pending_items = []
        if used_discount:
            self.discount = redeemed(self.discount)

    def record_finalized(
        self,
        *,
        invoice_id: UUID,
        number: str,
        usage: list[dict[str, Any]],
        usage_seen_position: int,
        occurred_at: datetime,
    ) -> None:
        """An invoice of this subscription was finalized: the usage it billed, per metric and
        period (adjustments add to what earlier invoices billed)."""
        self._record_finalized(
            invoice_id=invoice_id,
            number=number,
            usage=usage,
            usage_seen_position=usage_seen_position,
            occurred_at=occurred_at,
        )

    @event("InvoiceFinalized")
    def _record_finalized(
        self,
        invoice_id: UUID,
        number: str,
        usage: list[dict[str, Any]],
        usage_seen_position: int,
        occurred_at: datetime,
    ) -> None:
        self.drafts = {k: v for k, v in self.drafts.items() if k != str(invoice_id)}
        billed = dict(self.billed_usage)
        for item in usage:
            key = usage_key(item["metric"], item["period_start"])
            before = billed.get(key)
            billed[key] = {
                "metric": item["metric"],
                "period_start": item["period_start"],
                "period_end": item["period_end"],
                "amount": (before["amount"] if before else 0) + int(item["amount"]),
                "invoice_number": before["invoice_number"] if before else number,
            }
        self.billed_usage = billed
        self.usage_seen_position = max(self.usage_seen_position, usage_seen_position)

    def apply_discount(self, *, discount: dict[str, Any], occurred_at: datetime) -> None:
        self.check_not_canceled()
        self._apply_discount(discount=discount, occurred_at=occurred_at)

    @event("DiscountApplied")
    def _apply_discount(self, discount: dict[str, Any], occurred_at: datetime) -> None:
        self.discount = copy.deepcopy(discount)


def item_terms(name: str, quantity: int) -> str:
    """How an add-on item's terms read on invoice lines."""
    return f"{name} × {quantity}"


def usage_key(metric: str, period_start: str) -> str:
    return f"{metric}|{period_start}"
