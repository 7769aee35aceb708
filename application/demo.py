"""The demo scenarios of seed 000's simulation endpoints: a customer onboards, a payment fails,
a customer churns. Each is made of the ledger's ordinary commands, so the read models, the
alerts and the dashboard react exactly as they would to the same events from a real system.

A request's Idempotency-Key becomes one key per step ("<key>:register", "<key>:subscribe"...):
the same request again replays every step's first answer and records nothing new."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

from application import commands as c
from application.ledger import Ledger
from application.outcome import Outcome
from application.simulation import FAILURE_CODES, company_name, plan_catalog

DUE_DAYS = 14


@dataclass(frozen=True)
class PlanChoice:
    code: str
    currency: str


@dataclass(frozen=True)
class Target:
    """The subscription a scenario acts on (picked by the caller from the read models)."""

    subscription_id: UUID
    customer_id: UUID
    plan_code: str
    quantity: int
    amount: int
    currency: str


@dataclass(frozen=True)
class DemoOutcome:
    receipt: dict[str, Any]
    position: int


def _step(ctx: c.CommandContext, name: str) -> c.CommandContext:
    key = f"{ctx.idempotency_key}:{name}" if ctx.idempotency_key else None
    return replace(ctx, idempotency_key=key)


class DemoScenarios:
    def __init__(self, ledger: Ledger, rng: random.Random | None = None) -> None:
        self.ledger = ledger
        self.rng = rng or random.Random()

    def define_catalog(self, ctx: c.CommandContext) -> int:
        """Define the simulation's plans (a ledger without plans has nothing to sell); defining
        a plan again with the same terms records nothing. The last position."""
        position = 0
        for plan in plan_catalog():
            position = self.ledger.define_plan(plan, _step(ctx, f"plan:{plan.code}")).position
        return position

    def onboard(self, plan: PlanChoice, trial_days: int | None, ctx: c.CommandContext) -> DemoOutcome:
        """A new customer registers and starts a subscription to `plan` minutes later."""
        name = company_name(self.rng, plan.currency)
        slug = uuid4().hex[:10]
        registered = self.ledger.register_customer(
            c.RegisterCustomer(
                external_id=f"demo-{slug}",
                email=f"billing+{slug}@example.com",
                name=name,
                currency=plan.currency,
                metadata={"simulated": True, "scenario": "onboarding"},
            ),
            _step(ctx, "register"),
        )
        started = self.ledger.start_subscription(
            c.StartSubscription(
                customer_id=registered.resource_id, plan_code=plan.code, trial_days=trial_days
            ),
            _step(ctx, "subscribe"),
        )
        return DemoOutcome(
            {
                "scenario": "onboarding",
                "customer_id": str(registered.resource_id),
                "subscription_id": str(started.resource_id),
                "plan_code": started.receipt["plan_code"],
                "status": started.receipt["status"],
            },
            started.position,
        )

    def fail_payment(self, target: Target, ctx: c.CommandContext) -> DemoOutcome:
        """The subscription's current period is invoiced and its card payment is declined: the
        subscription becomes past_due and the policies raise a `payment_failed` alert."""
        drafted = self.ledger.draft_invoice(
            c.DraftInvoice(
                customer_id=target.customer_id,
                currency=target.currency,
                subscription_id=target.subscription_id,
                lines=[
                    c.InvoiceLine(
                        description=f"{target.plan_code} (demo charge)",
                        quantity=target.quantity,
                        unit_amount=target.amount,
                    )
                ],
            ),
            _step(ctx, "draft"),
        )
        finalized = self.ledger.finalize_invoice(
            c.FinalizeInvoice(
                invoice_id=drafted.resource_id,
                due_date=(ctx.occurred_at + timedelta(days=DUE_DAYS)).date(),
            ),
            _step(ctx, "finalize"),
        )
        payment = self.ledger.initiate_payment(
            c.InitiatePayment(
                customer_id=target.customer_id,
                amount=int(finalized.receipt["total"]),
                currency=target.currency,
                invoice_id=drafted.resource_id,
                provider_reference=f"demo_{uuid4().hex[:12]}",
            ),
            _step(ctx, "charge"),
        )
        code, message = self.rng.choice(FAILURE_CODES)
        failed = self.ledger.fail_payment(
            c.FailPayment(payment_id=payment.resource_id, failure_code=code, failure_message=message),
            _step(ctx, "fail"),
        )
        return DemoOutcome(
            {
                "scenario": "payment_failed",
                "customer_id": str(target.customer_id),
                "subscription_id": str(target.subscription_id),
                "invoice_id": str(drafted.resource_id),
                "payment_id": str(payment.resource_id),
                "failure_code": code,
            },
            failed.position,
        )

    def churn(self, target: Target, at_period_end: bool, ctx: c.CommandContext) -> DemoOutcome:
        """The customer cancels: now (its MRR leaves today) or at the end of the period."""
        canceled: Outcome = self.ledger.cancel_subscription(
            c.CancelSubscription(subscription_id=target.subscription_id, at_period_end=at_period_end),
            _step(ctx, "cancel"),
        )
        return DemoOutcome(
            {
                "scenario": "churn",
                "customer_id": str(target.customer_id),
                "subscription_id": str(target.subscription_id),
                "status": canceled.receipt["status"],
                "cancel_at_period_end": canceled.receipt["cancel_at_period_end"],
            },
            canceled.position,
        )
