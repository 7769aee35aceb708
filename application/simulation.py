"""`ledger simulate`: a realistic, deterministic billing history, written through the same use
cases the API calls, each command backdated to the moment it happens in the simulated world.

Determinism: the same seed, `customers`, `months` and `until` issue the same commands, in the
same order, with the same `effective_at` values and amounts (aggregate ids are random UUIDs and
differ). Every random decision comes from `random.Random` seeded from the seed (signup moments)
or from the seed and the customer's index (everything the customer does); nothing depends on ids,
the wall clock or hash order.

Order: customers are processed one after another. Each customer's history is a small discrete
event simulation: actions wait in a priority queue ordered by (moment, insertion order), so a
customer's commands are issued with non-decreasing `effective_at`, and nothing later than
`until` is issued: the customer's run stops at the first action due after it.

What a customer does (rates per month unless said otherwise, see the constants below):
- registers (currency EUR 45% / USD 35% / GBP 12% / JPY 8%; VAT for some), then starts a
  subscription minutes later: starter / pro / business, monthly (80%) or yearly (20%); the
  monthly starter and pro plans have a 14-day trial;
- a trial converts at trial_end or is abandoned (20%): canceled now, or set to
  cancel at its end (then ended there);
- each period starts with an invoice (one line: quantity x the subscription's amount, the
  period; plus proration lines of upgrades; downgrade credits as a discount), drafted at the
  period start and finalized an hour later with due_date = period start + 14 days;
- card payers (85%) are charged at finalization: 8% of first attempts fail (the subscription
  becomes past_due); the payment is retried 3, 5 and 7 days later until it succeeds
  (recovered); a fifth of the failing ones never succeed: 21 days after finalization the
  invoice is marked uncollectible and the subscription canceled at once;
- bank-transfer payers (15%) pay some days later: mostly before the due date, 18% late, 2% never
  (written off and canceled 7 days after the due date);
- 1.5% of succeeded payments get a partial refund days later;
- upgrades 2.5%, downgrades 1%, quantity changes 3%, monthly -> yearly switches 0.4% (the
  billing cycle restarts; the unused monthly time is credited on the yearly invoice);
- voluntary churn 1.5% of monthly periods (70% at period end, 30% at once, some refunded pro
  rata; never while a payment of theirs is failing), 20% of yearly subscriptions not renewed;
  12% of scheduled cancellations are withdrawn;
- at each period end the ledger's clock renews, converts a trial or ends a scheduled cancellation
  (the simulation's now is the simulated moment, so each write catches up to it, not further);
- a churned paying customer comes back (a new subscription, no trial) 1 to 8 months later with
  probability 30% (20% after a write-off): a reactivation.
With involuntary churn (about 1.7% of invoices never paid), about 3% of paying customers churn a
month.

Re-running with the same seed into the same store skips customers that already exist (a
customer interrupted mid-history stays as it was).

Writing: the simulation alone writes its customers' streams, so its appends are held in memory
and written `FLUSH_EVENTS` at a time between customers, in one transaction each (an interrupted
run loses what was not written yet); with `workers`, processes of their own simulate chunks of
customers and this one relocates them onto the log in customer order
(application/simulation_workers.py). Either way the log is the one a single process appending
command by command writes: same events, same order, same invoice numbers."""

from __future__ import annotations

import heapq
import itertools
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from application import commands as c
from application import simulation_workers as parallel
from application.ledger import Ledger, collections_by_hand, simulated_time
from application.outcome import Outcome
from domain import ids
from domain.base import ensure_utc
from domain.errors import InvalidValue
from domain.invoice import Invoice
from domain.money import divide_half_even
from domain.periods import add_months
from domain.plan import Plan
from infra.write_behind import WriteBatch

SOURCE = "system"
FLUSH_EVENTS = 20_000  # events held in memory before they are written, in one transaction
MAX_WRITE_ATTEMPTS = 20
CHUNK_CUSTOMERS = 200  # customers a worker process simulates at a time
MAX_DEFAULT_WORKERS = 8
ANALYZE_AFTER_EVENTS = 100_000
ACTOR = "simulate"

# ---------------------------------------------------------------------- catalogue

TIERS = ("starter", "pro", "business")
TIER_WEIGHTS = (50, 35, 15)
CURRENCIES = ("EUR", "USD", "GBP", "JPY")
CURRENCY_WEIGHTS = (45, 35, 12, 8)
# Monthly prices in minor units (JPY has no minor unit: 3000 is 3000 yen).
MONTHLY_PRICES: dict[str, tuple[int, int, int]] = {
    "EUR": (1900, 4900, 14900),
    "USD": (2000, 5000, 15000),
    "GBP": (1600, 4200, 12900),
    "JPY": (3000, 7500, 22000),
}
YEARLY_PRICE_IN_MONTHS = 10  # a yearly plan costs ten months: two months free
MONTHLY_TRIAL_DAYS = (14, 14, 0)  # starter and pro monthly plans start with a trial
# (tax rate in basis points, share of the currency's customers who pay it)
TAX_RATES: dict[str, tuple[int, float]] = {
    "EUR": (2000, 0.6),
    "GBP": (2000, 0.5),
    "JPY": (1000, 0.5),
    "USD": (0, 0.0),
}

# ---------------------------------------------------------------------- behaviour

YEARLY_SHARE = 0.2
TRIAL_ABANDON = 0.2
BANK_TRANSFER_SHARE = 0.15
CARD_FIRST_ATTEMPT_FAILS = 0.08
CARD_NEVER_RECOVERS = 0.2  # of the failing first attempts: 1.6% of card invoices
RETRY_AFTER_DAYS = (3, 5, 7)  # gaps between attempts; 4 attempts in all
CARD_WRITE_OFF_DAYS = 21  # after finalization
TRANSFER_NEVER_PAID = 0.02
TRANSFER_LATE = 0.18
TRANSFER_WRITE_OFF_DAYS = 7  # after the due date
DUE_DAYS = 14
PARTIAL_REFUND = 0.015
MONTHLY_CHURN = 0.015
MONTHLY_CHURN_AT_PERIOD_END = 0.7
YEARLY_NON_RENEWAL = 0.2
WITHDRAW_CANCELLATION = 0.12
PRORATA_REFUND_ON_CANCEL = 0.4
REACTIVATION = 0.3
REACTIVATION_AFTER_WRITE_OFF = 0.2
# Per month of a period: (kind, probability); at most one change per month.
CHANGES = (("upgrade", 0.025), ("downgrade", 0.01), ("quantity", 0.03), ("yearly", 0.004))
FAILURE_CODES = (
    ("card_declined", "Your card was declined."),
    ("insufficient_funds", "Your card has insufficient funds."),
    ("expired_card", "Your card has expired."),
    ("processing_error", "An error occurred while processing your card."),
)

_ADJECTIVES = (
    "Blue", "Bright", "Clever", "Copper", "Crimson", "Golden", "Green", "Hidden", "Iron", "Lucky",
    "Nimble", "North", "Quiet", "Rapid", "Silver", "Solid", "Swift", "True", "Vivid", "Wild",
)  # fmt: skip
_NOUNS = (
    "Anchor", "Bay", "Bridge", "Cloud", "Falcon", "Forge", "Harbor", "Labs", "Leaf", "Loop",
    "Maple", "Orbit", "Peak", "Pixel", "River", "Rocket", "Signal", "Stack", "Stone", "Works",
)  # fmt: skip
_SUFFIXES = {"EUR": ("GmbH", "SAS", "BV", "SRL"), "USD": ("Inc", "LLC"), "GBP": ("Ltd",), "JPY": ("KK",)}


def company_name(rng: random.Random, currency: str) -> str:
    """A plausible company name for a customer paying in `currency`."""
    return f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} {rng.choice(_SUFFIXES[currency])}"


def plan_code(tier: str, yearly: bool, currency: str) -> str:
    return f"{tier}-{'yearly' if yearly else 'monthly'}-{currency.lower()}"


def plan_name(tier: str, yearly: bool) -> str:
    return f"{tier.capitalize()} ({'yearly' if yearly else 'monthly'})"


def plan_catalog() -> list[c.DefinePlan]:
    """The plans the simulation defines: each tier monthly and yearly, in each currency."""
    plans = []
    for currency in CURRENCIES:
        for index, tier in enumerate(TIERS):
            monthly = MONTHLY_PRICES[currency][index]
            for yearly in (False, True):
                plans.append(
                    c.DefinePlan(
                        code=plan_code(tier, yearly, currency),
                        name=plan_name(tier, yearly),
                        currency=currency,
                        amount=monthly * YEARLY_PRICE_IN_MONTHS if yearly else monthly,
                        interval="year" if yearly else "month",
                        trial_days=0 if yearly else MONTHLY_TRIAL_DAYS[index],
                    )
                )
    return plans


# ---------------------------------------------------------------------- statistics


@dataclass
class SimulationStats:
    """Counts of what the simulation did (commands issued, by business meaning)."""

    customers: int = 0
    customers_skipped: int = 0  # already in the store from an earlier run
    plans: int = 0
    subscriptions: int = 0  # started, reactivations included
    trials_converted: int = 0
    trials_abandoned: int = 0
    upgrades: int = 0
    downgrades: int = 0
    quantity_changes: int = 0
    interval_switches: int = 0  # monthly -> yearly
    invoices: int = 0  # drafted
    invoices_paid_on_time: int = 0  # paid in full on or before the due date
    invoices_paid_late: int = 0
    invoices_never_paid: int = 0  # marked uncollectible
    invoices_open_at_end: int = 0  # still draft or unpaid at `until`
    failed_payments: int = 0  # failed attempts
    retries: int = 0
    cancellations_at_period_end: int = 0  # scheduled (paying subscriptions)
    cancellations_withdrawn: int = 0
    immediate_cancellations: int = 0  # voluntary, paying subscriptions
    involuntary_cancellations: int = 0  # after a write-off
    reactivations: int = 0
    refunds: int = 0
    commands: int = 0  # use cases called

    def summary(self) -> str:
        paid = self.invoices_paid_on_time + self.invoices_paid_late
        return (
            f"{self.customers} customers ({self.customers_skipped} skipped), "
            f"{self.subscriptions} subscriptions ({self.reactivations} reactivations), "
            f"trials {self.trials_converted} converted / {self.trials_abandoned} abandoned, "
            f"{self.upgrades} upgrades, {self.downgrades} downgrades, "
            f"{self.quantity_changes} quantity changes, {self.interval_switches} switches to yearly\n"
            f"{self.invoices} invoices: {paid} paid ({self.invoices_paid_late} late), "
            f"{self.invoices_never_paid} never paid, {self.invoices_open_at_end} open at the end; "
            f"{self.failed_payments} failed attempts, {self.retries} retries, {self.refunds} refunds\n"
            f"cancellations: {self.cancellations_at_period_end} at period end "
            f"({self.cancellations_withdrawn} withdrawn), {self.immediate_cancellations} immediate, "
            f"{self.involuntary_cancellations} for non-payment; {self.commands} commands"
        )

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def add(self, counts: dict[str, int]) -> None:
        for name, count in counts.items():
            setattr(self, name, getattr(self, name) + count)


# ---------------------------------------------------------------------- the simulation


def default_workers(customers: int) -> int:
    """Worker processes for a history of this many customers: one per core once there are
    enough chunks to share (starting them takes a second or two), else none."""
    if customers < 5 * CHUNK_CUSTOMERS:
        return 0
    return max(1, min(os.cpu_count() or 1, MAX_DEFAULT_WORKERS))


class Simulation:
    def __init__(
        self,
        ledger: Ledger,
        *,
        customers: int,
        months: int,
        seed: int,
        until: datetime | None = None,
        shard: tuple[int, int] = (0, 1),
        workers: int = 0,
        chunk_customers: int = CHUNK_CUSTOMERS,
    ) -> None:
        if customers < 0:
            raise InvalidValue("customers cannot be negative", field="customers")
        if months < 1:
            raise InvalidValue("months is at least 1", field="months")
        if not 0 <= shard[0] < shard[1]:
            raise InvalidValue("shard K/N needs 0 <= K < N", field="shard")
        self.shard = shard
        self.ledger = ledger
        self.customers = customers
        self.months = months
        self.seed = seed
        if until is None:
            until = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        self.until = ensure_utc(until, field="until")
        self.start = add_months(self.until, -months)
        self.moment = self.start  # the simulated now
        self.stats = SimulationStats()
        self.workers = workers
        self.chunk_customers = max(1, chunk_customers)
        self.workers_used = 0  # worker processes the last run had (none for a small history)
        self._existing: set[int] = set()  # customers (by index) of the history already in the store
        self._writing: WriteBatch | None = None
        self._detached: WriteBatch | None = None  # a worker's, kept from chunk to chunk
        # The steps (the customers each simulates) since the last write, and the stats then.
        self._window: list[tuple[list[int], Callable[[], None]]] = []
        self._stats_written = SimulationStats()

    def external_id(self, index: int) -> str:
        return f"sim-{self.seed}-{index}"

    def signup_moments(self) -> list[datetime]:
        """When each customer signs up, in index order (customer 1 is the oldest)."""
        rng = random.Random(f"signups:{self.seed}")
        span = int((self.until - self.start).total_seconds())
        offsets = sorted(rng.randrange(span) for _ in range(self.customers))
        return [self.start + timedelta(seconds=offset) for offset in offsets]

    def run(self, on_customer_done: Callable[[], None] | None = None) -> SimulationStats:
        # The ledger's now is the simulated moment: each command catches its subscription up to
        # the moment it happens in the simulated world, not to the wall clock. The simulation
        # alone writes its customers' streams: its appends are held in memory and written
        # `FLUSH_EVENTS` at a time, between customers (infra/write_behind.py).
        shard, shards = self.shard
        owned = [
            (index, signup)
            for index, signup in enumerate(self.signup_moments(), start=1)
            if (index - 1) % shards == shard
        ]
        done = on_customer_done or (lambda: None)
        with (
            simulated_time(lambda: self.moment),
            collections_by_hand(),
            self.ledger.write_behind().active() as batch,
        ):
            self._writing = batch
            self._existing = self._stored_customers([i for i, _ in owned])
            batch.absent.update(self._customer_id(i) for i, _ in owned if i not in self._existing)
            self._step([], self._define_plans)
            if self.workers > 0 and len(owned) > self.chunk_customers:
                self.workers_used = self.workers
                self._write()  # the plans, for the workers to read
                self._run_on_workers(owned, done)
            else:
                for index, signup in owned:
                    self._step([index], partial(self._customer, index, signup))
                    done()
            self._write()
        if batch.written >= ANALYZE_AFTER_EVENTS:
            # A bulk load the table's statistics do not know yet: until autovacuum gets to it,
            # the planner would guess (a parallel scan for a stream's few events).
            batch.recorder.analyze()
        return self.stats

    @property
    def _batch(self) -> WriteBatch:
        assert self._writing is not None, "only while the simulation runs"
        return self._writing

    def _customer_id(self, index: int) -> UUID:
        return ids.customer_id(self.external_id(index))

    def _stored_customers(self, indexes: list[int]) -> set[int]:
        """Which of these customers are in the store already."""
        found = self.ledger.store.existing_streams([self._customer_id(i) for i in indexes])
        return {i for i in indexes if self._customer_id(i) in found}

    def _customer(self, index: int, signup: datetime) -> None:
        if index in self._existing:
            self.stats.customers_skipped += 1
        else:
            _CustomerHistory(self, index, self.external_id(index), signup).run()

    # ------------------------------------------------------------ writing in batches

    def _step(self, customers: list[int], step: Callable[[], None]) -> None:
        """Run a step (what it appends is held), remembering it until its appends are written."""
        step()
        self._window.append((customers, step))
        if len(self._batch) >= FLUSH_EVENTS:
            self._write()

    def _write(self) -> None:
        """Write what the steps since the last write held. Another writer may have written one of
        the same streams meanwhile (another shard numbering invoices, a customer registered by
        hand): then nothing is written, and the steps run again on what is stored."""
        for attempt in range(1, MAX_WRITE_ATTEMPTS + 1):
            try:
                self._batch.flush()
                break
            except IntegrityError:
                self._batch.discard()
                if attempt == MAX_WRITE_ATTEMPTS:
                    raise
            self.stats = replace(self._stats_written)
            self._existing |= self._stored_customers([i for customers, _ in self._window for i in customers])
            for _, step in self._window:
                step()
        self._batch.release(keep=_is_plan)
        self._window = []
        self._stats_written = replace(self.stats)

    # ------------------------------------------------------------ on several cores

    def _run_on_workers(self, owned: list[tuple[int, datetime]], done: Callable[[], None]) -> None:
        """Chunks of customers simulated by worker processes, taken in customer order and
        relocated onto the log as it stands (application/simulation_workers.py)."""
        setup = parallel.WorkerSetup(
            env=dict(self.ledger.env),
            invoice_grace=self.ledger.billing.grace,
            customers=self.customers,
            months=self.months,
            seed=self.seed,
            until=self.until,
        )
        size = self.chunk_customers
        chunks = [owned[first : first + size] for first in range(0, len(owned), size)]
        tasks = (
            parallel.Chunk(chunk, frozenset(i for i, _ in chunk if i in self._existing)) for chunk in chunks
        )
        with parallel.worker_pool(setup, self.workers) as pool:
            for chunk, result in zip(chunks, pool.imap(parallel.simulate_chunk, tasks), strict=True):
                self._step([i for i, _ in chunk], self._chunk_step(chunk, result))
                for _ in chunk:
                    done()

    def _chunk_step(
        self, chunk: list[tuple[int, datetime]], result: parallel.ChunkResult | parallel.ChunkFailed
    ) -> Callable[[], None]:
        """A worker's chunk relocated; simulated here if the worker could not, or when run again
        (the store changed under it)."""
        taken: parallel.ChunkResult | None = result if isinstance(result, parallel.ChunkResult) else None

        def step() -> None:
            nonlocal taken
            if taken is not None:
                result, taken = taken, None
                store = self.ledger.store
                try:
                    events = parallel.relocate(
                        result.events,
                        head=store.head(),
                        numbered=store.stream_version(ids.INVOICE_NUMBERING_ID),
                        prefix=self.ledger.invoice_prefix,
                    )
                except parallel.RelocationFailed:
                    pass
                else:
                    self._batch.hold(events, result.timers)
                    self.stats.add(result.stats)
                    return
            for index, signup in chunk:
                self._customer(index, signup)

        return step

    def detached_chunk(self, chunk: parallel.Chunk) -> parallel.ChunkResult:
        """In a worker: simulate a chunk's customers into a detached batch, and take it."""
        self.stats = SimulationStats()
        self._existing = set(chunk.existing)
        if self._detached is None:
            self._detached = self.ledger.write_behind(detached=parallel.detached())
        batch = self._detached
        with simulated_time(lambda: self.moment), collections_by_hand(), batch.active():
            batch.absent.update(self._customer_id(i) for i, _ in chunk.customers if i not in self._existing)
            for index, signup in chunk.customers:
                self._customer(index, signup)
            events, timers = batch.take()
            batch.release(keep=_is_plan)
        return parallel.ChunkResult(events, timers, self.stats.as_dict())

    def _define_plans(self) -> None:
        ctx = self.context(self.start)
        for plan in plan_catalog():
            self.stats.commands += 1
            self.ledger.define_plan(plan, ctx)
            self.stats.plans += 1

    def context(self, moment: datetime) -> c.CommandContext:
        self.moment = moment
        return c.CommandContext(occurred_at=moment, source=SOURCE, actor=ACTOR)


def _is_plan(aggregate: object) -> bool:
    """Plans are kept from one write to the next: every customer reads them, none changes them
    (the simulation defined them), so they are read once per run."""
    return isinstance(aggregate, Plan)


# ---------------------------------------------------------------------- one customer

Cmd = TypeVar("Cmd")
Action = Callable[[datetime], None]


def _moment(value: Any) -> datetime:
    return datetime.fromisoformat(str(value))


@dataclass
class _Payment:
    id: UUID
    amount: int
    attempt: int = 1
    refunded: int = 0


@dataclass
class _Subscription:
    id: UUID
    tier: int
    yearly: bool
    quantity: int
    amount: int
    period_start: datetime
    period_end: datetime
    trialing: bool
    period: int = 0  # bumped at each new period: actions planned for an older one are dropped
    cancel_scheduled: bool = False
    ended: bool = False
    period_payment: _Payment | None = None  # what paid the current period's invoice
    past_due_invoices: set[UUID] = field(default_factory=set)  # mirrors the aggregate's list

    def follow(self, receipt: dict[str, Any]) -> None:
        self.amount = int(receipt["amount"])
        self.quantity = int(receipt["quantity"])
        self.period_start = _moment(receipt["current_period_start"])
        self.period_end = _moment(receipt["current_period_end"])


@dataclass
class _Invoice:
    id: UUID
    subscription: _Subscription
    period: int
    due: date
    total: int = 0
    settled: bool = False


class _CustomerHistory:
    """The whole history of one customer, issued in chronological order."""

    def __init__(self, sim: Simulation, index: int, external_id: str, signup: datetime) -> None:
        self.sim = sim
        self.ledger = sim.ledger
        self.stats = sim.stats
        self.until = sim.until
        self.index = index
        self.external_id = external_id
        self.rng = random.Random(f"customer:{sim.seed}:{index}")
        self.queue: list[tuple[datetime, int, Action]] = []
        self.order = itertools.count()
        self.payments = itertools.count(1)
        self.now = signup
        self.currency = self.rng.choices(CURRENCIES, CURRENCY_WEIGHTS)[0]
        self.by_transfer = self.rng.random() < BANK_TRANSFER_SHARE
        self.customer_id = ids.customer_id(external_id)
        self.subscription: _Subscription | None = None
        self.open_invoices: dict[UUID, _Invoice] = {}
        self.at(signup, self.register)

    # ------------------------------------------------------------ machinery

    def at(self, moment: datetime, action: Action) -> None:
        heapq.heappush(self.queue, (max(moment, self.now), next(self.order), action))

    def run(self) -> None:
        while self.queue:
            moment, _, action = heapq.heappop(self.queue)
            if moment > self.until:
                break
            self.now = moment
            action(moment)
        self.stats.invoices_open_at_end += len(self.open_invoices)

    def issue(
        self, use_case: Callable[[Cmd, c.CommandContext], Outcome], command: Cmd, moment: datetime
    ) -> Outcome:
        self.stats.commands += 1
        return use_case(command, self.sim.context(moment))

    def between(self, low: datetime, high: datetime) -> datetime:
        """A random whole second in [low, high] (low if the range is empty)."""
        seconds = int((high - low).total_seconds())
        return low + timedelta(seconds=self.rng.randint(0, max(seconds, 0)))

    def alive(self, sub: _Subscription, period: int) -> bool:
        return sub is self.subscription and not sub.ended and sub.period == period

    def prorate(self, amount: int, sub: _Subscription, moment: datetime) -> int:
        """The share of `amount` for the rest of the current period after `moment`."""
        total = int((sub.period_end - sub.period_start).total_seconds())
        left = int((sub.period_end - moment).total_seconds())
        return divide_half_even(amount * left, total) if total > 0 and left > 0 else 0

    # ------------------------------------------------------------ customer and subscriptions

    def register(self, moment: datetime) -> None:
        rng = self.rng
        rate, share = TAX_RATES[self.currency]
        name = company_name(rng, self.currency)
        self.issue(
            self.ledger.register_customer,
            c.RegisterCustomer(
                external_id=self.external_id,
                email=f"c{self.index}@example.com",
                name=name,
                currency=self.currency,
                tax_rate_bps=rate if rng.random() < share else 0,
                metadata={"simulated": True, "seed": self.sim.seed},
                net_terms_days=DUE_DAYS,
            ),
            moment,
        )
        self.stats.customers += 1
        self.at(moment + timedelta(minutes=rng.randint(1, 30)), self.subscribe)

    def subscribe(self, moment: datetime, *, reactivation: bool = False) -> None:
        rng = self.rng
        tier = rng.choices(range(len(TIERS)), TIER_WEIGHTS)[0]
        yearly = rng.random() < YEARLY_SHARE
        quantity = (1, rng.choice((1, 1, 2, 3, 5)), rng.randint(3, 25))[tier]
        outcome = self.issue(
            self.ledger.start_subscription,
            c.StartSubscription(
                customer_id=self.customer_id,
                plan_code=plan_code(TIERS[tier], yearly, self.currency),
                quantity=quantity,
                trial_days=0 if reactivation else None,
            ),
            moment,
        )
        receipt = outcome.receipt
        sub = _Subscription(
            id=outcome.resource_id,
            tier=tier,
            yearly=yearly,
            quantity=quantity,
            amount=int(receipt["amount"]),
            period_start=_moment(receipt["current_period_start"]),
            period_end=_moment(receipt["current_period_end"]),
            trialing=receipt["status"] == "trialing",
        )
        self.subscription = sub
        self.stats.subscriptions += 1
        if reactivation:
            self.stats.reactivations += 1
        if sub.trialing:
            if rng.random() < TRIAL_ABANDON:
                when = self.between(
                    sub.period_start + timedelta(hours=1), sub.period_end - timedelta(hours=1)
                )
                self.at(when, partial(self.abandon_trial, sub, rng.random() < 0.5))
            self.at(sub.period_end, partial(self.period_ends, sub, sub.period))
        else:
            self.begin_period(sub, moment)

    def abandon_trial(self, sub: _Subscription, at_period_end: bool, moment: datetime) -> None:
        if not self.alive(sub, 0):
            return
        self.issue(
            self.ledger.cancel_subscription,
            c.CancelSubscription(subscription_id=sub.id, at_period_end=at_period_end),
            moment,
        )
        self.stats.trials_abandoned += 1
        if at_period_end:
            sub.cancel_scheduled = True
        else:
            sub.ended = True

    def period_ends(self, sub: _Subscription, period: int, moment: datetime) -> None:
        """At the end of a period the ledger's clock ends a scheduled cancellation, converts a
        trial or renews: recorded here at the simulated moment, as the clock would have."""
        if not self.alive(sub, period):
            return
        outcome = self.issue(self.ledger.advance, c.Advance(sub.id), moment)
        if sub.cancel_scheduled:
            sub.ended = True
            if not sub.trialing:
                self.maybe_come_back(moment, REACTIVATION)
            return
        if sub.trialing:
            sub.trialing = False
            self.stats.trials_converted += 1
        sub.follow(outcome.receipt)
        sub.period += 1
        self.begin_period(sub, moment)

    def begin_period(self, sub: _Subscription, moment: datetime, restarted: bool = False) -> None:
        """A paid period starts: bill it, and plan what happens during it."""
        sub.period_payment = None
        self.bill(sub, moment, restarted)
        rng = self.rng
        period = sub.period
        low, high = sub.period_start + timedelta(hours=2), sub.period_end - timedelta(hours=2)
        if sub.yearly:
            if rng.random() < YEARLY_NON_RENEWAL:
                when = self.between(max(low, sub.period_end - timedelta(days=60)), high)
                self.at(when, partial(self.churn, sub, period, True))
        elif rng.random() < MONTHLY_CHURN:
            at_end = rng.random() < MONTHLY_CHURN_AT_PERIOD_END
            self.at(self.between(low, high), partial(self.churn, sub, period, at_end))
        months = 12 if sub.yearly else 1
        for month in range(months):
            draw = rng.random()
            for kind, probability in CHANGES:
                if draw < probability:
                    window_start = max(low, add_months(sub.period_start, month))
                    window_end = min(high, add_months(sub.period_start, month + 1))
                    when = self.between(window_start, window_end)
                    self.at(when, partial(self.change, sub, period, kind))
                    break
                draw -= probability
        self.at(sub.period_end, partial(self.period_ends, sub, period))

    def change(self, sub: _Subscription, period: int, kind: str, moment: datetime) -> None:
        if not self.alive(sub, period) or sub.cancel_scheduled:
            return
        tier, yearly, quantity = sub.tier, sub.yearly, sub.quantity
        if kind == "upgrade" and tier < len(TIERS) - 1:
            tier += 1
        elif kind == "downgrade" and tier > 0:
            tier -= 1
        elif kind == "quantity":
            quantity = max(1, quantity + self.rng.choice((1, 1, 2, 3, 5, -1, -1, -2)))
        elif kind == "yearly" and not yearly:
            yearly = True
        if (tier, yearly, quantity) == (sub.tier, sub.yearly, sub.quantity):
            return  # nothing would change: issue nothing
        outcome = self.issue(
            self.ledger.change_subscription,
            c.ChangeSubscription(
                subscription_id=sub.id,
                plan_code=plan_code(TIERS[tier], yearly, self.currency)
                if (tier, yearly) != (sub.tier, sub.yearly)
                else None,
                quantity=quantity if quantity != sub.quantity else None,
            ),
            moment,
        )
        if kind == "upgrade":
            self.stats.upgrades += 1
        elif kind == "downgrade":
            self.stats.downgrades += 1
        elif kind == "quantity":
            self.stats.quantity_changes += 1
        else:
            self.stats.interval_switches += 1
        # The ledger prorates (its lines join the next invoice); a new interval restarts the
        # cycle, and the ledger bills the new period at once.
        restarted = yearly != sub.yearly
        sub.tier, sub.yearly = tier, yearly
        sub.follow(outcome.receipt)
        if restarted:
            sub.period += 1
            self.begin_period(sub, moment, restarted=True)

    def churn(self, sub: _Subscription, period: int, at_period_end: bool, moment: datetime) -> None:
        if not self.alive(sub, period) or sub.cancel_scheduled or sub.past_due_invoices:
            return  # a customer in dunning does not cancel (and see `attempt_outcome`)
        payment = sub.period_payment
        refund = not at_period_end and payment is not None and self.rng.random() < PRORATA_REFUND_ON_CANCEL
        self.issue(
            self.ledger.cancel_subscription,
            c.CancelSubscription(
                subscription_id=sub.id,
                at_period_end=at_period_end,
                # Refunded pro rata, or credited by the ledger on the final invoice.
                proration_behavior="none" if refund else "create_prorations",
            ),
            moment,
        )
        if at_period_end:
            sub.cancel_scheduled = True
            self.stats.cancellations_at_period_end += 1
            if self.rng.random() < WITHDRAW_CANCELLATION:
                when = self.between(moment + timedelta(hours=1), sub.period_end - timedelta(hours=1))
                self.at(when, partial(self.withdraw, sub, period))
            return
        sub.ended = True
        self.stats.immediate_cancellations += 1
        if refund and payment is not None:
            self.refund(payment, self.prorate(payment.amount, sub, moment), moment)
        self.maybe_come_back(moment, REACTIVATION)

    def withdraw(self, sub: _Subscription, period: int, moment: datetime) -> None:
        if not self.alive(sub, period) or not sub.cancel_scheduled:
            return
        self.issue(self.ledger.withdraw_cancellation, sub.id, moment)
        sub.cancel_scheduled = False
        self.stats.cancellations_withdrawn += 1

    def maybe_come_back(self, moment: datetime, probability: float) -> None:
        if self.rng.random() < probability:
            later = moment + timedelta(days=self.rng.randint(30, 240), seconds=self.rng.randint(0, 86_399))
            self.at(later, partial(self.subscribe, reactivation=True))

    # ------------------------------------------------------------ invoices and payments

    def bill(self, sub: _Subscription, moment: datetime, restarted: bool = False) -> None:
        """The ledger drafted the period's invoice at its start (its id derives from the
        subscription and the period); it is finalized when the grace period ends."""
        invoice_id = ids.subscription_invoice_id(
            sub.id, moment.isoformat(), "subscription_update" if restarted else "cycle"
        )
        self.stats.invoices += 1
        invoice = _Invoice(id=invoice_id, subscription=sub, period=sub.period, due=moment.date())
        self.open_invoices[invoice.id] = invoice
        self.at(moment + self.ledger.billing.grace, partial(self.finalize, invoice))

    def finalize(self, invoice: _Invoice, moment: datetime) -> None:
        """The ledger's clock finalizes the invoice at the end of its grace period."""
        self.issue(self.ledger.advance, c.Advance(invoice.subscription.id), moment)
        finalized: Invoice = self.ledger.repository.get(invoice.id)
        invoice.total = int(finalized.amount_remaining)
        invoice.due = finalized.due_date or invoice.due
        if finalized.status == "paid":  # nothing to pay (credited in full)
            self.settle(invoice, None, moment)
            return
        rng = self.rng
        due = datetime.combine(invoice.due, time(), UTC)
        if self.by_transfer:
            draw = rng.random()
            if draw < TRANSFER_NEVER_PAID:
                self.at(due + timedelta(days=TRANSFER_WRITE_OFF_DAYS), partial(self.write_off, invoice))
                return
            if draw < TRANSFER_NEVER_PAID + TRANSFER_LATE:
                when = self.between(due + timedelta(days=1), due + timedelta(days=26))
            else:
                when = self.between(moment + timedelta(days=1), due + timedelta(hours=23))
            self.at(when, partial(self.charge, invoice, 0))
            return
        failures = 0
        if rng.random() < CARD_FIRST_ATTEMPT_FAILS:
            never = rng.random() < CARD_NEVER_RECOVERS
            failures = len(RETRY_AFTER_DAYS) + 1 if never else rng.choice((1, 1, 1, 2, 3))
        self.at(moment, partial(self.charge, invoice, failures))
        if failures > len(RETRY_AFTER_DAYS):
            self.at(moment + timedelta(days=CARD_WRITE_OFF_DAYS), partial(self.write_off, invoice))

    def charge(self, invoice: _Invoice, failures: int, moment: datetime) -> None:
        """Start a payment of the invoice; `failures` attempts will fail before one succeeds."""
        outcome = self.issue(
            self.ledger.initiate_payment,
            c.InitiatePayment(
                customer_id=self.customer_id,
                amount=invoice.total,
                currency=self.currency,
                invoice_id=invoice.id,
                provider_reference=f"sim_{self.sim.seed}_{self.index}_{next(self.payments)}",
            ),
            moment,
        )
        payment = _Payment(id=outcome.resource_id, amount=invoice.total)
        self.at(self.settles_at(moment), partial(self.attempt_outcome, invoice, payment, failures))

    def settles_at(self, moment: datetime) -> datetime:
        return moment + timedelta(seconds=self.rng.randint(2, 90))

    def attempt_outcome(self, invoice: _Invoice, payment: _Payment, failures: int, moment: datetime) -> None:
        sub = invoice.subscription
        if failures == 0:
            self.issue(self.ledger.succeed_payment, c.SucceedPayment(payment_id=payment.id), moment)
            sub.past_due_invoices.discard(invoice.id)
            self.settle(invoice, payment, moment)
            return
        code, message = self.rng.choice(FAILURE_CODES)
        self.issue(
            self.ledger.fail_payment,
            c.FailPayment(payment_id=payment.id, failure_code=code, failure_message=message),
            moment,
        )
        self.stats.failed_payments += 1
        if not sub.ended and not sub.trialing:
            sub.past_due_invoices.add(invoice.id)
        if payment.attempt <= len(RETRY_AFTER_DAYS):
            gap = timedelta(days=RETRY_AFTER_DAYS[payment.attempt - 1])
            self.at(moment + gap, partial(self.retry, invoice, payment, failures - 1))

    def retry(self, invoice: _Invoice, payment: _Payment, failures: int, moment: datetime) -> None:
        self.issue(self.ledger.retry_payment, c.RetryPayment(payment_id=payment.id), moment)
        payment.attempt += 1
        self.stats.retries += 1
        self.at(self.settles_at(moment), partial(self.attempt_outcome, invoice, payment, failures))

    def settle(self, invoice: _Invoice, payment: _Payment | None, moment: datetime) -> None:
        invoice.settled = True
        self.open_invoices.pop(invoice.id, None)
        if moment.date() <= invoice.due:
            self.stats.invoices_paid_on_time += 1
        else:
            self.stats.invoices_paid_late += 1
        if payment is None:
            return
        if invoice.subscription.period == invoice.period:
            invoice.subscription.period_payment = payment
        if self.rng.random() < PARTIAL_REFUND:
            share = self.rng.choice((10, 20, 25, 50))
            when = moment + timedelta(days=self.rng.randint(1, 20), seconds=self.rng.randint(0, 86_399))
            amount = divide_half_even(payment.amount * share, 100)
            self.at(when, lambda moment: self.refund(payment, amount, moment))

    def refund(self, payment: _Payment, amount: int, moment: datetime) -> None:
        amount = min(amount, payment.amount - payment.refunded)
        if amount <= 0:
            return
        self.issue(self.ledger.refund_payment, c.RefundPayment(payment_id=payment.id, amount=amount), moment)
        payment.refunded += amount
        self.stats.refunds += 1

    def write_off(self, invoice: _Invoice, moment: datetime) -> None:
        if invoice.settled:
            return
        self.issue(
            self.ledger.mark_invoice_uncollectible,
            c.MarkInvoiceUncollectible(invoice_id=invoice.id),
            moment,
        )
        invoice.settled = True
        self.open_invoices.pop(invoice.id, None)
        self.stats.invoices_never_paid += 1
        sub = invoice.subscription
        if sub is self.subscription and not sub.ended:
            self.issue(
                self.ledger.cancel_subscription,
                c.CancelSubscription(subscription_id=sub.id, at_period_end=False),
                moment,
            )
            sub.ended = True
            self.stats.involuntary_cancellations += 1
            self.maybe_come_back(moment, REACTIVATION_AFTER_WRITE_OFF)
