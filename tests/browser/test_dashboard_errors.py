"""When the read models lag behind a write the page just made, the screen says so (503, with
what to do), instead of showing stale rows or nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from application import commands as c
from application.demo import DemoScenarios, Target
from bench.browser import serving
from infra.bootstrap import CORE_PROJECTION, bootstrap
from projections.runner import head_position, wait_for_position
from tests.browser.conftest import Product, mint_keys, product_settings, screenshot, sign_in

pytestmark = pytest.mark.browser


@pytest.fixture
def lagging_product(database_url: str, tmp_path: Path) -> Iterator[Product]:
    """One customer whose payment failed; reads wait at most half a second for a position."""
    settings = product_settings(database_url, tmp_path, read_wait_timeout_seconds=0.5)
    container = bootstrap(settings, database_url, run_projection=True)
    ledger = container.ledger
    month_ago = datetime.now(UTC) - timedelta(days=30)
    ctx = c.CommandContext(occurred_at=month_ago, source="api", actor="browser-tests")
    ledger.define_plan(
        c.DefinePlan(code="pro", name="Pro", currency="EUR", amount=4900, interval="month"), ctx
    )
    customer = ledger.register_customer(
        c.RegisterCustomer(external_id="acme", email="billing@acme.test", currency="EUR", name="Acme SAS"),
        ctx,
    )
    sub = ledger.start_subscription(
        c.StartSubscription(customer_id=customer.resource_id, plan_code="pro"), ctx
    )
    DemoScenarios(ledger).fail_payment(
        Target(sub.resource_id, customer.resource_id, "pro", 1, 4900, "EUR"),
        c.CommandContext(occurred_at=datetime.now(UTC), source="api", actor="browser-tests"),
    )
    container.wake_projection()
    assert wait_for_position(container.pool, CORE_PROJECTION, head_position(container.pool), 60)
    with serving(container) as url:
        yield Product(url, container, mint_keys(container))


def test_a_read_that_cannot_see_the_pages_own_write_yet_says_503_and_what_to_do(
    page: Any, lagging_product: Product
) -> None:
    product = lagging_product
    sign_in(page, product, "admin")
    page.goto(product.url + "/#/payments")
    page.wait_for_selector("[data-testid=payments] [data-action=retry]")
    assert product.container.projection is not None
    product.container.projection.stop()  # the read models stop following the log

    page.click("[data-testid=payments] [data-action=retry]")
    page.locator("dialog button[type=submit]").click()

    message = page.locator("[data-testid=payments] .notice[data-status='503']")
    message.wait_for()
    assert "catching up (503)" in message.inner_text()
    assert message.locator("button", has_text="Retry").count() == 1
    screenshot(page, "payments-503")
