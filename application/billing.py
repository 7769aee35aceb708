"""The billing engine: the ledger invoices its subscriptions by itself (SPEC 7).

A subscription is billed as the ledger's clock moves it: at each period start an invoice is
drafted (id derived from the subscription and the period start, so each period is billed once,
however often the clock runs or the log is replayed) with the period's fees in advance (the
plan's, and one per add-on item), the usage of the period that just ended in arrears, the
proration lines waiting since the last invoice and an adjustment for each earlier period whose
usage changed after it was billed. A draft stays a
draft for the grace period (late usage of its period is added to it), then it is finalized: a
gapless number, a due date after the customer's net terms, the customer's credit balance applied.
A trial bills nothing; a cancellation bills a final invoice for the last usage (and, canceled now,
the credit of the unused time).

Everything is decided by pure functions (`domain.invoicing` for the lines, `domain.billing` for the
figures); this module loads what a period needs (customer, plan, usage records) and records the
invoices with the subscription's events, in the same append (`Ledger._commit`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol

from domain import ids
from domain.base import LedgerAggregate
from domain.customer import Customer
from domain.invoice import DRAFT, Invoice, InvoiceNumberAssigned, assign_invoice_number
from domain.invoicing import (
    BilledUsage,
    FeeTerms,
    Line,
    UsageFact,
    adjustment_line,
    fee_line,
    line_id,
    usage_lines,
)
from domain.plan import Plan
from domain.subscription import Subscription, item_terms, usage_key

if TYPE_CHECKING:
    from application.ledger import Ledger

LAST_INSTANT = timedelta(microseconds=1)


@dataclass
class BillingWork:
    """What one append loads and changes beside the command's own aggregates: customers, plans,
    invoices, invoice numbers. Aggregates the command already holds are used as they are."""

    ledger: Ledger
    # Set for a preview "as known at" a moment: the log as it stood at this position.
    as_of: int | None = None
    loaded: dict[UUID, LedgerAggregate | None] = field(default_factory=dict)
    # The last invoice number assigned before this work, when the store does not hold it yet (the
    # clock's batch before, still being written); None: as the store says.
    numbered: int | None = None
    numbers: list[InvoiceNumberAssigned] = field(default_factory=list)
    handled: dict[UUID, int] = field(default_factory=dict)  # events of each subscription billed
    # Read once for a batch of subscriptions (the clock's sweep): the log's head, and each
    # customer's usage records of a window of time (None: read as asked).
    _head: int | None = None
    _usage: dict[UUID, list[UsageFact]] | None = None
    _usage_window: tuple[datetime, datetime] | None = None
    _late: dict[UUID, list[UsageFact]] | None = None
    _late_after: int = 0

    def hold(self, aggregates: Iterable[object]) -> None:
        for aggregate in aggregates:
            if isinstance(aggregate, LedgerAggregate):
                self.loaded.setdefault(aggregate.id, aggregate)

    def find(self, aggregate_id: UUID) -> LedgerAggregate | None:
        if aggregate_id not in self.loaded:
            found: object = None
            if self.as_of is None:
                found = self.ledger._find(aggregate_id)
            elif version := self.ledger.store.version_at(aggregate_id, self.as_of):
                found = self.ledger.repository.get(aggregate_id, version=version)
            self.loaded[aggregate_id] = found if isinstance(found, LedgerAggregate) else None
        return self.loaded[aggregate_id]

    def head(self) -> int:
        if self.as_of is not None:
            return self.as_of
        if self._head is None:
            self._head = self.ledger.store.head()
        return self._head

    def usage_records(
        self, customer_id: UUID, start: datetime, end: datetime, changed_after: int = 0
    ) -> list[UsageFact]:
        """A customer's usage records in [start, end) recorded or corrected after a position."""
        if changed_after == 0 and self._usage is not None and self._usage_window is not None:
            window_start, window_end = self._usage_window
            if window_start <= start and end <= window_end:
                return [r for r in self._usage.get(customer_id, []) if start <= r.occurred_at < end]
        if self._late is not None and changed_after >= self._late_after:
            return [
                r
                for r in self._late.get(customer_id, [])
                if start <= r.occurred_at < end and r.changed_at > changed_after
            ]
        return self._read_usage(customer_id, start, end, changed_after)

    def _read_usage(
        self, customer_id: UUID, start: datetime, end: datetime, changed_after: int
    ) -> list[UsageFact]:
        rows = self.ledger.store.usage_records(
            customer_id, start=start, end=end, changed_after=changed_after, up_to=self.as_of
        )
        return [UsageFact(r[0], r[1], r[3], r[2], Decimal(r[4]), r[5]) for r in rows]

    def prefetch(self, subs: list[Subscription], customers: dict[UUID, Any]) -> None:
        """Read at once what billing these subscriptions will ask for: their customers, the usage
        of their current periods, the usage recorded since each was last billed."""
        self.hold(customers.values())
        if not subs:
            return
        self._head = self.ledger.store.head()
        start = min(s.current_period_start for s in subs)
        end = max(s.current_period_end for s in subs)
        ids = sorted({s.customer_id for s in subs})
        self._usage_window = (start, end)
        self._usage = self._read_usage_of(ids, start, end, 0)
        self._late_after = min(s.usage_seen_position for s in subs)
        self._late = self._read_usage_of(
            ids, datetime.min.replace(tzinfo=start.tzinfo), end, self._late_after
        )

    def _read_usage_of(
        self, customer_ids: list[UUID], start: datetime, end: datetime, changed_after: int
    ) -> dict[UUID, list[UsageFact]]:
        found: dict[UUID, list[UsageFact]] = {customer: [] for customer in customer_ids}
        for (
            customer,
            record,
            position,
            occurred_at,
            metric,
            value,
            changed,
        ) in self.ledger.store.usage_records_of(
            customer_ids, start=start, end=end, changed_after=changed_after, up_to=self._head
        ):
            found[customer].append(UsageFact(record, position, metric, occurred_at, Decimal(value), changed))
        return found

    def add(self, aggregate: LedgerAggregate) -> None:
        self.loaded[aggregate.id] = aggregate

    def customer(self, customer_id: UUID) -> Customer:
        found = self.find(customer_id)
        if not isinstance(found, Customer):
            raise LookupError(f"no customer {customer_id}")
        return found

    def plan(self, code: str) -> Plan | None:
        found = self.find(ids.plan_id(code))
        return found if isinstance(found, Plan) else None

    def invoice(self, invoice_id: UUID) -> Invoice | None:
        found = self.find(invoice_id)
        return found if isinstance(found, Invoice) else None

    def next_number(self, invoice_id: UUID, at: datetime) -> str:
        if self.numbers:
            last = self.numbers[-1].originator_version
        elif self.numbered is not None:
            last = self.numbered
        else:
            last = self.ledger.store.stream_version(ids.INVOICE_NUMBERING_ID)
        assigned = assign_invoice_number(
            last_sequence=last, prefix=self.ledger.invoice_prefix, invoice_id=invoice_id, occurred_at=at
        )
        self.numbers.append(assigned)
        return assigned.number

    def changed(self) -> list[LedgerAggregate]:
        return [a for a in self.loaded.values() if a is not None and a.pending_events]


class Billing:
    def __init__(self, ledger: Ledger, *, grace: timedelta) -> None:
        self.ledger = ledger
        self.grace = grace

    # ------------------------------------------------------------------ the clock of a subscription

    def bill(self, sub: Subscription, now: datetime, work: BillingWork) -> None:
        """Invoice what the subscription's new events call for, then move it to `now` step by step
        (a transition, or a draft to finalize, whichever falls due first), invoicing as it goes.
        A subscription billed elsewhere only moves (its invoices come from its provider)."""
        if sub.billed_by != "ledger":
            sub.advance(now)
            return
        self._on_new_events(sub, work)
        while (due := sub.next_due_at) is not None and due <= now:
            draft_due = sub.next_draft_due_at
            transition_due = sub.next_transition_at
            if draft_due is not None and (transition_due is None or draft_due <= transition_due):
                invoice_id = min(sub.drafts, key=lambda i: (sub.drafts[i], i))
                self._finalize(sub, UUID(invoice_id), sub.drafts[invoice_id], work)
            else:
                sub.advance(due)
                self._on_new_events(sub, work)

    def _on_new_events(self, sub: Subscription, work: BillingWork) -> None:
        events = sub.pending_events
        start = work.handled.get(sub.id, 0)
        work.handled[sub.id] = len(events)
        for e in events[start:]:
            self._on_event(sub, e, work)
            work.handled[sub.id] = max(work.handled[sub.id], len(sub.pending_events))

    def _on_event(self, sub: Subscription, e: DomainEventProtocol[UUID], work: BillingWork) -> None:
        kind = type(e).__name__
        at: datetime = e.occurred_at  # type: ignore[attr-defined]
        if kind == "Started" and getattr(e, "trial_end", None) is None:
            self._invoice(sub, work, at=at, reason="subscription_create", fee_period=sub.period_at(at))
        elif kind == "TrialEnded":
            self._invoice(sub, work, at=at, reason="subscription_cycle", fee_period=sub.period_at(at))
        elif kind == "Renewed":
            ended = sub.period_at(at - LAST_INSTANT)
            self._invoice(
                sub,
                work,
                at=at,
                reason="subscription_cycle",
                fee_period=sub.period_at(at),
                usage_period=ended,
            )
        elif kind == "Changed":
            restarted = getattr(e, "period_start", None) == at and not sub.in_trial_at(at)
            if restarted and sub.billing_anchor == at:
                before = self._usage_period_before(sub, at)
                self._invoice(
                    sub,
                    work,
                    at=at,
                    reason="subscription_update",
                    fee_period=sub.period_at(at),
                    usage_period=before,
                )
            elif (
                getattr(e, "proration_behavior", "create_prorations") == "always_invoice"
                and sub.pending_items
            ):
                self._invoice(sub, work, at=at, reason="subscription_update")
        elif kind in ("ItemAdded", "ItemQuantityChanged", "ItemRemoved"):
            if (
                getattr(e, "proration_behavior", "create_prorations") == "always_invoice"
                and sub.pending_items
            ):
                self._invoice(sub, work, at=at, reason="subscription_update")
        elif kind == "Canceled":
            ended_at: datetime = e.ended_at  # type: ignore[attr-defined]
            last = sub.current_period_start, ended_at
            usage = None if sub.trial_end is not None and ended_at <= sub.trial_end else last
            self._invoice(sub, work, at=at, reason="subscription_cancel", usage_period=usage)

    def _usage_period_before(self, sub: Subscription, at: datetime) -> tuple[datetime, datetime] | None:
        """The usage period a cycle restart at `at` closes: from the last billed period start."""
        starts = [datetime.fromisoformat(s) for s in sub.billed_fees if datetime.fromisoformat(s) < at]
        return (max(starts), at) if starts else None

    # ------------------------------------------------------------------ drafting

    def _invoice(
        self,
        sub: Subscription,
        work: BillingWork,
        *,
        at: datetime,
        reason: str,
        fee_period: tuple[datetime, datetime] | None = None,
        usage_period: tuple[datetime, datetime] | None = None,
    ) -> Invoice | None:
        """Draft the invoice the moment `at` calls for (nothing if it bills nothing)."""
        key = fee_period[0] if fee_period is not None else at
        suffix = "cycle" if reason in ("subscription_create", "subscription_cycle") else reason
        invoice_id = ids.subscription_invoice_id(sub.id, key.isoformat(), suffix)
        if str(invoice_id) in sub.invoiced:
            return None  # billed already: each period once
        customer = work.customer(sub.customer_id)
        plan = work.plan(sub.plan_code)
        lines: list[Line] = []
        fee: dict[str, Any] | None = None
        if fee_period is not None:
            terms = FeeTerms(
                sub.id, sub.plan_code, plan.name if plan else sub.plan_code, sub.amount, sub.quantity
            )
            line = fee_line(invoice_id, terms, *fee_period)
            lines.append(line)
            fee = {
                "period_start": fee_period[0].isoformat(),
                "period_end": fee_period[1].isoformat(),
                "amount": line.amount,
                "terms": f"{terms.plan_name} × {terms.quantity}",
                "items": {},
            }
            for item_id, item in sub.items.items():
                item_line = fee_line(
                    invoice_id,
                    FeeTerms(
                        sub.id,
                        item["plan_code"],
                        item["name"],
                        item["amount"],
                        item["quantity"],
                        UUID(item_id),
                    ),
                    *fee_period,
                )
                lines.append(item_line)
                fee["items"][item_id] = {
                    "amount": item_line.amount,
                    "terms": item_terms(item["name"], item["quantity"]),
                }
        if usage_period is not None and plan is not None:
            lines.extend(self._usage_lines(sub, plan, invoice_id, usage_period, work))
        pending = [_pending_line(invoice_id, i, item) for i, item in enumerate(sub.pending_items)]
        lines.extend(pending)
        lines.extend(self._late_usage_lines(sub, work, invoice_id, before=(usage_period or (at, at))[0]))
        if not lines:
            return None
        discount, discount_owner = sub.discount, "subscription"
        if discount is None and customer.discount is not None:
            discount, discount_owner = customer.discount, "customer"
        invoice = Invoice.generate(
            invoice_id=invoice_id,
            customer_id=sub.customer_id,
            subscription_id=sub.id,
            currency=sub.currency,
            tax_rate_bps=customer.tax_rate_bps,
            tax_exempt=customer.tax_exempt,
            coupon=discount,
            lines=[line.as_payload() for line in lines],
            period_start=fee_period[0] if fee_period else (usage_period[0] if usage_period else at),
            period_end=fee_period[1] if fee_period else (usage_period[1] if usage_period else at),
            usage_period=usage_period,
            finalize_at=at + self.grace,
            billing_reason=reason,
            occurred_at=at,
        )
        work.add(invoice)
        sub.record_invoice(
            invoice_id=invoice_id,
            finalize_at=at + self.grace,
            fee=fee,
            used_pending=bool(pending),
            used_discount=discount is not None and discount_owner == "subscription",
            occurred_at=at,
        )
        if discount is not None and discount_owner == "customer":
            customer.redeem_discount(invoice_id=invoice_id, occurred_at=at)
        return invoice

    def _usage_lines(
        self,
        sub: Subscription,
        plan: Plan,
        invoice_id: UUID,
        period: tuple[datetime, datetime],
        work: BillingWork,
    ) -> list[Line]:
        """The usage of `period`, rated with the prices of the plan in force at its end."""
        prices, quotas = plan.usage_terms_at(period[1])
        if not prices:
            return []
        as_of = work.head()  # every record at or before it is committed
        records = [r for r in work.usage_records(sub.customer_id, *period) if r.position <= as_of]
        aggregations = {metric: quota.get("aggregation", "sum") for metric, quota in quotas.items()}
        return usage_lines(
            invoice_id,
            prices=prices,
            aggregations=aggregations,
            records=records,
            period_start=period[0],
            period_end=period[1],
            as_of=as_of,
        )

    def _late_usage_lines(
        self, sub: Subscription, work: BillingWork, invoice_id: UUID, before: datetime
    ) -> list[Line]:
        """Usage of periods already billed that arrived (or was corrected) since: re-rated with
        everything now known, minus what was billed for that metric and period, any age."""
        since = datetime.min.replace(tzinfo=before.tzinfo)
        late = work.usage_records(sub.customer_id, since, before, sub.usage_seen_position)
        if not late:
            return []
        lines: list[Line] = []
        periods = sorted({(sub.period_at(r.occurred_at), r.metric) for r in late})
        for (start, end), metric in periods:
            if sub.in_trial_at(start) or start.isoformat() not in self._billed_period_starts(sub):
                continue  # a trial, or a period this engine never billed: nothing to adjust
            billed = sub.billed_usage.get(usage_key(metric, start.isoformat()))
            plan = work.plan(sub.plan_code)
            if plan is None:
                continue
            prices, quotas = plan.usage_terms_at(end)
            if metric not in prices:
                continue
            number = billed["invoice_number"] if billed else self._number_of_invoice_billing(sub, work, end)
            adjustment = adjustment_line(
                invoice_id,
                billed=BilledUsage(metric, start, end, int(billed["amount"]) if billed else 0, number),
                price=prices[metric],
                aggregation=quotas.get(metric, {}).get("aggregation", "sum"),
                records=work.usage_records(sub.customer_id, start, end),
            )
            if adjustment is not None:
                lines.append(adjustment)
        return lines

    @staticmethod
    def _billed_period_starts(sub: Subscription) -> set[str]:
        """Periods whose usage this engine billed: each billed fee's period (its usage is billed
        on the next invoice), whether or not it had usage."""
        return set(sub.billed_fees)

    def _number_of_invoice_billing(
        self, sub: Subscription, work: BillingWork, usage_end: datetime
    ) -> str | None:
        invoice = work.invoice(ids.subscription_invoice_id(sub.id, usage_end.isoformat()))
        return invoice.number if invoice is not None else None

    # ------------------------------------------------------------------ finalizing

    def _finalize(self, sub: Subscription, invoice_id: UUID, at: datetime, work: BillingWork) -> None:
        """The grace period is over: add the usage that came in late, number the invoice, apply
        the customer's credit balance, and remember on the subscription what it billed."""
        invoice = work.invoice(invoice_id)
        if invoice is None or invoice.status != DRAFT:
            number = invoice.number if invoice is not None else ""
            sub.record_finalized(
                invoice_id=invoice_id, number=number or "", usage=[], usage_seen_position=0, occurred_at=at
            )
            return
        seen = work.head()
        if invoice.usage_period is not None:
            plan = work.plan(sub.plan_code)
            usage = self._usage_lines(sub, plan, invoice_id, invoice.usage_period, work) if plan else []
            others = [line for line in invoice.lines if line.get("kind") != "usage"]
            invoice.revise_lines(lines=[*others, *(line.as_payload() for line in usage)], occurred_at=at)
        customer = work.customer(invoice.customer_id)
        number = work.next_number(invoice.id, at)
        invoice.finalize(
            number=number,
            due_date=at.date() + timedelta(days=customer.net_terms_days),
            occurred_at=at,
            balance_available=customer.balance(invoice.currency),
            collection_method=customer.collection_method,
            dunning=self.ledger.dunning,
        )
        if invoice.balance_applied:
            customer.adjust_balance(
                currency=invoice.currency,
                amount=-invoice.balance_applied,
                reason="applied",
                reference=number,
                occurred_at=at,
            )
        if invoice.total < 0:
            customer.adjust_balance(
                currency=invoice.currency,
                amount=-invoice.total,
                reason="credited",
                reference=number,
                occurred_at=at,
            )
        billed = [
            {
                "metric": line["metric"],
                "period_start": line["period_start"],
                "period_end": line["period_end"],
                "amount": line["amount"],
            }
            for line in invoice.lines
            if line.get("kind") in ("usage", "adjustment") and line.get("metric")
        ]
        sub.record_finalized(
            invoice_id=invoice.id, number=number, usage=billed, usage_seen_position=seen, occurred_at=at
        )


def _pending_line(invoice_id: UUID, index: int, item: dict[str, Any]) -> Line:
    start, end = item.get("period_start"), item.get("period_end")
    return Line(
        line_id=line_id(invoice_id, "pending", index),
        kind=item.get("kind", "proration"),
        description=item["description"],
        quantity=Decimal(1),
        unit_amount=Decimal(item["amount"]),
        amount=int(item["amount"]),
        period_start=datetime.fromisoformat(start) if start else None,
        period_end=datetime.fromisoformat(end) if end else None,
        source=item.get("source", {}),
    )
