"""The README's Integrations section, each system's block run verbatim with bash and curl against a
real server (uvicorn serving the API), as the Try it block is: what a VaultAI, Servelink or
BillingOps user pastes must do what the README says it does."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any
from urllib.parse import urlparse

import pytest

from infra.bootstrap import Container
from tests.integration.live_server import live_server
from tests.integration.test_readme_try_it import README, answers

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def integration_block(system: str) -> str:
    section = README.read_text().split("## Integrations", 1)[1].split("\n## ", 1)[0]
    part = section.split(f"### {system}", 1)[1].split("\n### ", 1)[0]
    match = re.search(r"```sh\n(.*?)```", part, re.DOTALL)
    assert match, f"the {system} section has a sh block"
    return match.group(1)


def run(container: Container, system: str, times: int = 1) -> list[list[Any]]:
    """The JSON documents the block printed, for each of `times` runs against one server (its
    lifespan closes the container when it stops)."""
    _, key = container.keys.mint(role="admin", name="readme")
    block = integration_block(system)
    assert block.startswith("KEY=lk_admin_...")
    outputs: list[list[Any]] = []
    with live_server(container) as url:
        # The placeholder key and the default address are the only words replaced.
        script = block.replace("KEY=lk_admin_...", f"KEY={key}", 1).replace(
            "localhost:8000", urlparse(url).netloc
        )
        for _ in range(times):
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", script],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            outputs.append(answers(done.stdout))
    return outputs


def test_the_vaultai_block_onboards_an_organisation_reports_with_its_token_and_reads_its_status(
    container: Container,
) -> None:
    [[plan, onboarded, report, status]] = run(container, "VaultAI")
    assert (plan["code"], plan["trial_days"]) == ("managed-cloud", 4)
    assert onboarded["ingest_key"].startswith("lk_ingest_")
    assert (report["customer_id"], report["metric"], report["value"]) == (
        onboarded["customer_id"],
        "active_users",
        "15",
    )
    assert status["customer_id"] == onboarded["customer_id"]
    assert status["name"] == "ACME Corp"
    subscription = status["subscription"]
    assert (subscription["status"], subscription["trial_active"]) == ("trialing", True)
    assert subscription["trial_end"].replace("Z", "+00:00") == onboarded["trial_end"].replace("Z", "+00:00")


def test_the_servelink_block_meters_traffic_per_project_and_sells_an_add_on(container: Container) -> None:
    [[plan, subscription, entitlement, quotas, add_on, item, with_item, removed]] = run(
        container, "Servelink"
    )
    assert plan["quotas"]["traffic_bytes"]["group_by"] == "project"
    assert subscription["plan_code"] == "servelink-pro"
    assert (entitlement["group"], entitlement["allowed"], entitlement["used"]) == ("alpha", True, 850_000_000)
    rows = [(r["metric"], r["group"], r["used"], r["state"]) for r in quotas["data"]]
    assert rows == [
        ("traffic_bytes", "alpha", 850_000_000, "warning"),
        ("traffic_bytes", "beta", 200_000_000, "ok"),
    ]
    assert (add_on["code"], add_on["amount"]) == ("servelink-extra-storage", 500)
    assert (item["subscription_id"], item["quantity"], item["monthly_amount"]) == (
        subscription["id"],
        2,
        1000,
    )
    assert ([i["id"] for i in with_item["items"]], with_item["mrr"]) == ([item["id"]], 1300)
    assert (removed["id"], removed["removed_at"] is not None) == (item["id"], True)


def test_the_billingops_block_registers_and_updates_its_user_as_a_customer(container: Container) -> None:
    # BillingOps sends its events again (a retry): the same ids are duplicates, nothing changes.
    [[created, customers], [again, customers_again]] = run(container, "BillingOps", times=2)
    assert created["results"] == [{"id": "user.created:user_123", "status": "accepted"}]
    [customer] = customers["data"]
    assert (customer["external_id"], customer["email"], customer["name"], customer["currency"]) == (
        "user_123",
        "john@example.com",
        "John Doe",
        "USD",
    )
    assert again["results"] == [{"id": "user.created:user_123", "status": "duplicate"}]
    assert customers_again["data"] == customers["data"]
