"""Seed 000's simulation endpoints, for demos: an onboarding, a failed payment, a churn. They
exist only with LEDGER_ENABLE_SIMULATION=true (`ledger up --demo`); otherwise every path is 404."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request, status

from api.deps import AdminKey, ContainerDep, ReadConn, command_context
from api.errors import ApiProblem
from api.routing import LedgerRoute
from api.schemas.simulation import SimulationChurn, SimulationOnboarding, SimulationOut, SimulationTarget
from application.demo import DemoOutcome, DemoScenarios, PlanChoice, Target
from application.simulation import plan_code
from infra.bootstrap import Container
from projections import queries


def simulation_enabled(container: ContainerDep) -> None:
    if not container.settings.enable_simulation:
        raise ApiProblem(
            404,
            "Not found",
            "the simulation endpoints are off: run `ledger up --demo` or set LEDGER_ENABLE_SIMULATION=true",
            code="not_found",
        )


router = APIRouter(
    route_class=LedgerRoute,
    prefix="/v1/simulation",
    tags=["simulation"],
    dependencies=[Depends(simulation_enabled)],
)


def _answer(container: Container, outcome: DemoOutcome) -> dict[str, Any]:
    container.wake_projection()
    return {**outcome.receipt, "position": outcome.position}


def _nothing_to_act_on(detail: str) -> ApiProblem:
    return ApiProblem(409, "Nothing to simulate on", detail, code="nothing_to_simulate")


# Documented answers beyond those every command has (api/openapi.py adds those).
SWITCHED_OFF: dict[int | str, dict[str, Any]] = {
    404: {"description": "the simulation endpoints are off (LEDGER_ENABLE_SIMULATION is not true)"}
}
SWITCHED_OFF_OR_REFUSED: dict[int | str, dict[str, Any]] = {
    **SWITCHED_OFF,
    409: {"description": "nothing to simulate in the ledger's current state"},
}


@router.post(
    "/onboarding", status_code=status.HTTP_201_CREATED, response_model=SimulationOut, responses=SWITCHED_OFF
)
def simulate_onboarding(
    request: Request,
    container: ContainerDep,
    conn: ReadConn,
    principal: AdminKey,
    body: Annotated[SimulationOnboarding | None, Body()] = None,
) -> dict[str, Any]:
    """A new customer registers and subscribes (to `plan_code`, else a random monthly plan; the
    simulation's plans are defined first when the ledger has none)."""
    body = body or SimulationOnboarding()
    ctx = command_context(request, principal, body, None)
    scenarios = DemoScenarios(container.ledger)
    plan = queries.pick_plan(conn, body.plan_code)
    if plan is None and body.plan_code is not None:
        raise ApiProblem(
            422,
            "Unknown reference",
            f"no active plan with code '{body.plan_code}'",
            code="not_found",
            errors=[{"field": "plan_code", "message": "no active plan with this code"}],
        )
    if plan is None:
        scenarios.define_catalog(ctx)
        choice = PlanChoice(code=plan_code("pro", False, "EUR"), currency="EUR")
    else:
        choice = PlanChoice(code=plan["code"], currency=plan["currency"])
    outcome = scenarios.onboard(choice, body.trial_days, ctx)
    return _answer(container, outcome)


def _target(conn: Any, statuses: tuple[str, ...], body: SimulationTarget) -> Target:
    row = queries.pick_subscription(conn, statuses=statuses, customer_id=body.customer_id)
    if row is None:
        whose = f"customer {body.customer_id}" if body.customer_id else "the ledger"
        raise _nothing_to_act_on(f"{whose} has no subscription in status {' or '.join(statuses)}")
    return Target(
        subscription_id=row["id"],
        customer_id=row["customer_id"],
        plan_code=row["plan_code"],
        quantity=int(row["quantity"]),
        amount=int(row["amount"]),
        currency=row["currency"],
    )


@router.post("/payment_failed", response_model=SimulationOut, responses=SWITCHED_OFF_OR_REFUSED)
def simulate_payment_failed(
    request: Request,
    container: ContainerDep,
    conn: ReadConn,
    principal: AdminKey,
    body: Annotated[SimulationTarget | None, Body()] = None,
) -> dict[str, Any]:
    """An active subscription (of `customer_id`, else a random one) is invoiced and the card
    payment is declined: past_due, and a critical `payment_failed` alert."""
    body = body or SimulationTarget()
    target = _target(conn, ("active", "past_due"), body)
    ctx = command_context(request, principal, body, None)
    outcome = DemoScenarios(container.ledger).fail_payment(target, ctx)
    return _answer(container, outcome)


@router.post("/churn", response_model=SimulationOut, responses=SWITCHED_OFF_OR_REFUSED)
def simulate_churn(
    request: Request,
    container: ContainerDep,
    conn: ReadConn,
    principal: AdminKey,
    body: Annotated[SimulationChurn | None, Body()] = None,
) -> dict[str, Any]:
    """A customer (`customer_id`, else a random paying one) cancels its subscription, now unless
    `at_period_end`."""
    body = body or SimulationChurn()
    target = _target(conn, ("active", "past_due", "trialing"), body)
    ctx = command_context(request, principal, body, None)
    outcome = DemoScenarios(container.ledger).churn(target, body.at_period_end, ctx)
    return _answer(container, outcome)
