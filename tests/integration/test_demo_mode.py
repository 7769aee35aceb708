"""`ledger up --demo`: an empty ledger gets a small simulated history before the clock starts; a
ledger with customers is left as it is."""

from __future__ import annotations

import pytest

from infra import cli
from infra.bootstrap import bootstrap
from infra.settings import Settings
from tests.conftest import count_events


def test_demo_mode_fills_an_empty_ledger_once(
    settings: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "DEMO_CUSTOMERS", 4)
    monkeypatch.setattr(cli, "DEMO_MONTHS", 2)

    cli._fill_demo_history(settings, database_url)

    container = bootstrap(settings, database_url, run_projection=False)
    try:
        assert cli._has_customers(container)
        filled = count_events(container)
        assert filled > 4
        cli._fill_demo_history(settings, database_url)
        assert count_events(container) == filled
    finally:
        container.close()
