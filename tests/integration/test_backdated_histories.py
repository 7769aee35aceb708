"""Random backdated histories written through the API, in the order they happened (trials, plan and
quantity changes, interval switches, cancellations now and at period end, reactivations, periods
across month ends), each write answering caught up to now:

- what is read right after the last write (with min_position) equals what a replay of the log
  computes, table by table;
- every subscription reads the status, period and end that an independent model of SPEC 3 gives;
- MRR of every day equals an independent day-by-day computation from the commands (SPEC 4).

The model below is written from the SPEC alone: it shares no code with the ledger."""

from __future__ import annotations

import calendar
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.app import create_app
from infra.bootstrap import CORE_PROJECTION, Container, bootstrap
from infra.settings import Settings
from projections.replay import replay
from tests.conftest import bearer, read_model_rows

# code: (amount, months per period)
PLANS = {"basic": (1000, 1), "plus": (2500, 1), "quarterly": (5000, 3), "annual": (24000, 12)}
INTERVALS = {1: ("month", 1), 3: ("month", 3), 12: ("year", 1)}


# ---------------------------------------------------------------------- the independent model


def add_months(moment: datetime, months: int) -> datetime:
    total = moment.month - 1 + months
    year, month = moment.year + total // 12, total % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


@dataclass
class ModelSubscription:
    start: datetime
    trial_end: datetime | None
    anchor: datetime
    months: int
    terms: list[tuple[datetime, int, int]]  # (from, plan amount, quantity), in time order
    months_from: list[tuple[datetime, int]]  # (from, months per period)
    ended_at: datetime | None = None
    cancel_at: datetime | None = None
    id: str = ""

    def in_trial(self, moment: datetime) -> bool:
        return self.trial_end is not None and moment < self.trial_end

    def period_at(self, moment: datetime) -> tuple[datetime, datetime]:
        if self.trial_end is not None and moment < self.trial_end:
            return self.start, self.trial_end
        index = 0
        while add_months(self.anchor, self.months * (index + 1)) <= moment:
            index += 1
        return add_months(self.anchor, self.months * index), add_months(
            self.anchor, self.months * (index + 1)
        )

    def mrr_on(self, day: date) -> int:
        """SPEC 4: the contribution at the end of `day`, when active or past_due."""
        end_of_day = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
        if self.start >= end_of_day:
            return 0
        if self.trial_end is not None and self.trial_end >= end_of_day:
            return 0
        if self.ended_at is not None and self.ended_at < end_of_day:
            return 0
        amount, quantity = next((a, q) for at, a, q in reversed(self.terms) if at < end_of_day)
        months = next(m for at, m in reversed(self.months_from) if at < end_of_day)
        monthly = Decimal(amount * quantity) / Decimal(months)
        return int(monthly.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


@dataclass
class ModelCustomer:
    external_id: str
    id: str = ""
    subscriptions: list[ModelSubscription] = field(default_factory=list)

    @property
    def live(self) -> ModelSubscription | None:
        last = self.subscriptions[-1] if self.subscriptions else None
        return last if last is not None and last.ended_at is None and last.cancel_at is None else None


# ---------------------------------------------------------------------- histories


@dataclass(frozen=True)
class Step:
    kind: str  # quantity, plan, cancel_now, cancel_end, restart
    hours_later: int
    value: int


steps = st.lists(
    st.builds(
        Step,
        st.sampled_from(["quantity", "plan", "plan", "cancel_now", "cancel_end", "restart"]),
        st.integers(1, 24 * 120),
        st.integers(0, 30),
    ),
    max_size=6,
)
customers = st.lists(
    st.tuples(
        st.integers(30, 700),  # started this many days ago
        st.booleans(),  # on the last day of its month (renewals across month ends)
        st.sampled_from(sorted(PLANS)),
        st.sampled_from([0, 0, 14]),  # trial days
        st.integers(1, 4),  # quantity
        steps,
    ),
    min_size=1,
    max_size=3,
)


class Api:
    def __init__(self, client: TestClient, admin: dict[str, str]) -> None:
        self.client, self.admin, self.position = client, admin, 0

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post(path, json=body, headers=self.admin)
        assert response.status_code in (200, 201), (path, body, response.text)
        answer: dict[str, Any] = response.json()
        self.position = max(self.position, answer["position"])
        return answer

    def get(self, path: str, **params: Any) -> Any:
        response = self.client.get(path, params={"min_position": self.position, **params}, headers=self.admin)
        assert response.status_code == 200, response.text
        return response.json()


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def start(api: Api, customer: ModelCustomer, at: datetime, plan: str, trial_days: int, quantity: int) -> None:
    answer = api.post(
        "/v1/subscriptions",
        {
            "customer_id": customer.id,
            "plan_code": plan,
            "quantity": quantity,
            "trial_days": trial_days,
            "effective_at": iso(at),
        },
    )
    amount, months = PLANS[plan]
    trial_end = at + timedelta(days=trial_days) if trial_days else None
    sub = ModelSubscription(at, trial_end, trial_end or at, months, [(at, amount, quantity)], [(at, months)])
    sub.id = answer["id"]
    customer.subscriptions.append(sub)


def customer_id(customer: ModelCustomer) -> str:
    return str(
        uuid.uuid5(uuid.UUID("6f1c1f0e-9a57-4b1e-8f43-3c2b1f4f6a10"), f"customer:{customer.external_id}")
    )


def play(api: Api, now: datetime, history: list[Any]) -> list[ModelCustomer]:
    for code, (amount, months) in PLANS.items():
        interval, count = INTERVALS[months]
        body = {"code": code, "name": code, "currency": "EUR", "amount": amount, "interval": interval}
        api.post("/v1/plans", {**body, "interval_count": count, "effective_at": "2024-01-01T00:00:00Z"})
    model: list[ModelCustomer] = []
    for index, (days_ago, month_end, plan, trial_days, quantity, plan_steps) in enumerate(history):
        customer = ModelCustomer(f"c{index}-{uuid.uuid4().hex[:6]}")
        model.append(customer)
        customer.id = api.post(
            "/v1/customers",
            {"external_id": customer.external_id, "email": "x@example.com", "currency": "EUR",
             "effective_at": "2024-01-01T00:00:00Z"},
        )["id"]  # fmt: skip
        at = (now - timedelta(days=days_ago)).replace(hour=9 + index, minute=17, second=0, microsecond=0)
        if month_end:
            at = at.replace(day=calendar.monthrange(at.year, at.month)[1])
        start(api, customer, at, plan, trial_days, quantity)
        for step in plan_steps:
            at += timedelta(hours=step.hours_later)
            if at >= now - timedelta(minutes=1):
                break
            sub = customer.live
            if step.kind == "restart":
                if sub is None:
                    start(api, customer, at, sorted(PLANS)[step.value % 4], 14 * (step.value % 2), 1)
                continue
            if sub is None or (sub.ended_at is not None) or at < sub.start:
                continue
            path = f"/v1/subscriptions/{sub.id}"
            if step.kind == "quantity":
                new_quantity = step.value % 5 + 1
                api.post(f"{path}/change", {"quantity": new_quantity, "effective_at": iso(at)})
                sub.terms.append((at, sub.terms[-1][1], new_quantity))
            elif step.kind == "plan":
                code = sorted(PLANS)[step.value % 4]
                amount, months = PLANS[code]
                api.post(f"{path}/change", {"plan_code": code, "effective_at": iso(at)})
                sub.terms.append((at, amount, sub.terms[-1][2]))
                if months != sub.months:
                    if not sub.in_trial(at):
                        sub.anchor = at  # a new interval restarts the cycle
                    sub.months = months
                    sub.months_from.append((at, months))
            elif step.kind == "cancel_now":
                api.post(f"{path}/cancel", {"at_period_end": False, "effective_at": iso(at)})
                sub.ended_at = at
            elif step.kind == "cancel_end":
                api.post(f"{path}/cancel", {"at_period_end": True, "effective_at": iso(at)})
                sub.cancel_at = sub.period_at(at)[1]
                if sub.cancel_at <= now:
                    sub.ended_at = sub.cancel_at
    return model


# ---------------------------------------------------------------------- the property


@pytest.fixture
def fresh(database_url: str, settings: Settings) -> Iterator[Any]:
    """A fresh ledger (schema of its own) per example."""

    def make() -> Any:
        schema = f"t_{uuid.uuid4().hex[:12]}"
        return bootstrap(settings.model_copy(update={"database_schema": schema}), database_url)

    yield make


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(customers)
def test_a_backdated_history_reads_as_the_model_and_as_its_replay(fresh: Any, history: list[Any]) -> None:
    container: Container = fresh()
    try:
        with TestClient(create_app(lambda: container), raise_server_exceptions=False) as client:
            _, raw = container.keys.mint(role="admin", name="tests")
            api = Api(client, bearer(raw))
            now = container.ledger.now()
            model = play(api, now, history)
            now = container.ledger.now()

            # Each subscription reads as the model says, right after the last write.
            for customer in model:
                for sub in customer.subscriptions:
                    read = api.get(f"/v1/subscriptions/{sub.id}")
                    if sub.ended_at is not None and sub.ended_at <= now:
                        assert read["status"] == "canceled", (sub, read)
                        assert datetime.fromisoformat(read["ended_at"]) == sub.ended_at
                        continue
                    assert read["status"] == ("trialing" if sub.in_trial(now) else "active"), (sub, read)
                    period = (
                        datetime.fromisoformat(read["current_period_start"]),
                        datetime.fromisoformat(read["current_period_end"]),
                    )
                    assert period == sub.period_at(now), (sub, read)
                    if sub.cancel_at is not None:
                        assert datetime.fromisoformat(read["cancel_at"]) == sub.cancel_at

            # MRR of every day equals the model's day-by-day sum.
            first = min(s.start for c in model for s in c.subscriptions).date() - timedelta(days=1)
            rows = api.get("/v1/metrics/mrr", **{"from": first.isoformat(), "to": now.date().isoformat()})
            got = {date.fromisoformat(r["date"]): r["mrr"] for r in rows["data"]}
            expected = {
                day: sum(s.mrr_on(day) for c in model for s in c.subscriptions)
                for day in (first + timedelta(days=n) for n in range((now.date() - first).days + 1))
            }
            wrong = {day: (got.get(day), value) for day, value in expected.items() if got.get(day) != value}
            assert wrong == {}

            # The state read right after the last write is what a replay of the log computes.
            live = read_model_rows(container)
            schema = container.settings.database_schema
            replay(container.address.conninfo(), schema, CORE_PROJECTION, workers=1)
            rebuilt = read_model_rows(container)
            for table, rows_ in live.items():
                assert (table, rows_) == (table, rebuilt[table])
    finally:
        container.close()
