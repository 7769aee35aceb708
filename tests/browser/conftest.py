"""The dashboard in a real browser: Debian's Chromium driven by Playwright for Python, against the
real product (the API over PostgreSQL with the store-fed projector and the policies, served by
uvicorn on a free port). Screenshots of every screen are kept as test artifacts, in
LEDGER_SCREENSHOT_DIR (default: <tmp>/ledger-dashboard-screenshots)."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from application.commands import CommandContext
from application.demo import DemoScenarios, Target
from application.simulation import Simulation
from bench.browser import chromium_path, launch_chromium, serving
from infra.bootstrap import CORE_PROJECTION, Container, bootstrap, start_policies
from infra.settings import Settings
from projections.runner import head_position, wait_for_position

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(
    os.environ.get("LEDGER_SCREENSHOT_DIR") or Path(tempfile.gettempdir()) / "ledger-dashboard-screenshots"
)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if chromium_path() is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install the system Chromium (apt-get install -y chromium) before the tests")
        pytest.skip("no system Chromium here (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Product:
    """The running product: its URL, its container and keys of each role."""

    url: str
    container: Container
    keys: dict[str, str]

    def api(self, path: str, role: str = "admin", **params: Any) -> Any:
        """GET through the public API, after every write so far (read-your-writes)."""
        params.setdefault("min_position", head_position(self.container.pool))
        response = httpx.get(
            self.url + path, params=params, headers={"Authorization": f"Bearer {self.keys[role]}"}, timeout=30
        )
        assert response.status_code == 200, response.text
        return response.json()


def product_settings(database_url: str, tmp: Path, **overrides: Any) -> Settings:
    return Settings(
        database_url=database_url,
        database_schema=f"b_{uuid.uuid4().hex[:12]}",
        data_dir=tmp / "data",
        database_pool_size=6,
        projection_poll_seconds=0.02,
        _env_file=None,  # type: ignore[call-arg]
        **overrides,
    )


def mint_keys(container: Container) -> dict[str, str]:
    return {
        role: container.keys.mint(role=role, name=f"browser {role}")[1]
        for role in ("read", "admin", "audit", "ingest")
    }


@pytest.fixture(scope="module")
def product(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Product]:
    """A year of 40 simulated customers up to today, then one more failed payment (and its
    critical alert, raised by the policies), served on a free port."""
    settings = product_settings(database_url, tmp_path_factory.mktemp("dashboard"))
    container = bootstrap(settings, database_url, run_projection=True)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    Simulation(container.ledger, customers=40, months=12, seed=5, until=today).run()
    # The clock and the policies start once the history is written (they would renew the
    # simulated subscriptions while the simulation does it itself).
    start_policies(container)
    container.wake_projection()
    assert wait_for_position(container.pool, CORE_PROJECTION, head_position(container.pool), 120)
    with container.pool.connection() as conn:
        sub: Any = conn.execute(
            "SELECT * FROM rm_subscriptions WHERE status = 'active' ORDER BY seq LIMIT 1"
        ).fetchone()
    DemoScenarios(container.ledger).fail_payment(
        Target(
            subscription_id=sub["id"],
            customer_id=sub["customer_id"],
            plan_code=sub["plan_code"],
            quantity=sub["quantity"],
            amount=sub["amount"],
            currency=sub["currency"],
        ),
        CommandContext(occurred_at=datetime.now(UTC), source="api", actor="browser-tests"),
    )
    container.wake_projection()
    with serving(container) as url:
        yield Product(url, container, mint_keys(container))


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(
        viewport={"width": 1440, "height": 1000}, locale="en-US", color_scheme="light"
    )
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"the page threw: {errors}"


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: Any, product: Product, role: str) -> None:
    page.goto(product.url + "/")
    page.fill("#api-key", product.keys[role])
    page.click("button[type=submit]")
    page.wait_for_selector("#main[data-screen=overview]")


def wait_for_overview(page: Any) -> None:
    page.wait_for_selector("[data-card=mrr][data-value]")
    page.wait_for_selector("#mrr-chart[data-drawn]")
