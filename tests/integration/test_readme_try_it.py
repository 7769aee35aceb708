"""The README's "Try it" block, run verbatim with bash and curl against a real server (uvicorn
serving the API), and its answers checked: what a newcomer pastes must answer something."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from infra.bootstrap import Container, bootstrap
from infra.settings import Settings
from tests.integration.live_server import live_server

README = Path(__file__).resolve().parents[2] / "README.md"


def try_it_block() -> str:
    text = README.read_text()
    section = text.split("## Try it", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match, "the Try it section has a sh block"
    return match.group(1)


def answers(output: str) -> list[Any]:
    """The JSON documents curl printed, one after the other (curl adds no newline)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while at < len(output):
        if output[at].isspace():
            at += 1
            continue
        document, at = decoder.raw_decode(output, at)
        found.append(document)
    return found


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_readme_try_it_commands_answer_the_plan_and_the_customer_just_written(
    container: Container,
) -> None:
    _, key = container.keys.mint(role="admin", name="readme")
    block = try_it_block()
    assert block.startswith("KEY=lk_admin_...")
    with live_server(container) as url:
        # The placeholder key and the default address are the only words replaced.
        script = block.replace("KEY=lk_admin_...", f"KEY={key}", 1).replace(
            "localhost:8000", urlparse(url).netloc
        )
        run = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert run.returncode == 0, run.stderr
    plan, customers = answers(run.stdout)
    assert (plan["code"], plan["amount"], plan["currency"]) == ("pro", 2000, "EUR")
    assert [c["external_id"] for c in customers["data"]] == ["acme"]


def test_the_readme_links_only_files_inside_the_repository() -> None:
    root = README.parent
    for target in re.findall(r"\]\(([^)#\s]+)", README.read_text()):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        resolved = (root / target).resolve()
        assert resolved.is_relative_to(root), f"{target} is outside the repository"
        assert resolved.exists(), f"{target} does not exist"


def billing_block() -> str:
    section = README.read_text().split("## Billing", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match, "the Billing section has a sh block"
    return match.group(1)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_readme_billing_example_invoices_two_periods_with_the_coupon_and_previews_the_third(
    database_url: str, settings: Settings
) -> None:
    container = bootstrap(settings.model_copy(update={"allow_test_clock": True}), database_url)
    try:
        _, key = container.keys.mint(role="admin", name="readme")
        block = billing_block()
        assert block.startswith("KEY=lk_admin_...")
        with live_server(container) as url:
            script = block.replace("KEY=lk_admin_...", f"KEY={key}", 1).replace(
                "localhost:8000", urlparse(url).netloc
            )
            run = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", script],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
    finally:
        container.close()
    assert run.returncode == 0, run.stderr
    plan, coupon, discounted, subscription, invoices, upcoming = answers(run.stdout)
    assert (plan["code"], coupon["code"], discounted["discount"]["coupon"]) == ("api", "LAUNCH", "LAUNCH")
    assert subscription["status"] == "active"
    first, second = invoices["data"]
    for invoice in (first, second):
        assert invoice["status"] == "open" and invoice["number"].startswith("INV-")
        # 2000 − 10% = 1800; 20% tax = 360.
        assert (invoice["subtotal"], invoice["discount"], invoice["tax"], invoice["total"]) == (
            2000,
            200,
            360,
            2160,
        )
    assert (first["billing_reason"], second["billing_reason"]) == (
        "subscription_create",
        "subscription_cycle",
    )
    assert upcoming["status"] == "draft" and upcoming["discount"] == 200  # the coupon's third invoice
