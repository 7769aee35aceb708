"""What the tests of the seeds' integrations (SPEC section 10) share: a ledger whose test clock may
move, its API as a client sees it (reads wait for the last write), and the policies run to the
end of the log on demand (no background loop, no sleeps)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi.testclient import TestClient

from api.app import create_app
from infra.bootstrap import CORE_PROJECTION, Container, bootstrap
from infra.settings import Settings
from projections.policies import Policies
from projections.runner import head_position, wait_for_position
from tests.conftest import bearer


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass
class Api:
    client: TestClient
    container: Container
    admin: dict[str, str]
    position: int = 0
    policies: Policies = field(init=False)

    def __post_init__(self) -> None:
        self.policies = Policies(
            self.container.pool,
            self.container.ledger,
            CORE_PROJECTION,
            self.container.settings.inactivity_days,
        )

    def key(self, role: str, customer_id: str | None = None) -> dict[str, str]:
        from uuid import UUID

        _, raw = self.container.keys.mint(
            role=role, name=f"tests-{role}", customer_id=UUID(customer_id) if customer_id else None
        )
        return bearer(raw)

    def post(
        self, path: str, body: dict[str, Any], status: int = 201, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        response = self.client.post(path, json=body, headers=headers or self.admin)
        assert response.status_code == status, response.text
        answer: dict[str, Any] = response.json()
        self.position = max(self.position, int(answer.get("position") or 0))
        return answer

    def get(self, path: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
        response = self.client.get(
            path, params={**params, "min_position": self.position}, headers=headers or self.admin
        )
        assert response.status_code == 200, response.text
        return response.json()

    def advance(self, to: datetime) -> None:
        """Move the ledger's now (the test clock): what falls due by then is recorded at once."""
        moved = self.post("/v1/ops/clock", {"advance_to": iso(to)}, 200)
        self.position = max(self.position, moved["position"])

    def now(self) -> datetime:
        return self.container.ledger.now()

    def run_policies(self) -> None:
        """Let the read models, then the policies, then the read models again (the alerts the
        policies raised) catch up with the whole log."""
        for _ in range(3):
            self._projected()
            self.policies.catch_up()
        self._projected()
        self.position = max(self.position, head_position(self.container.pool))

    def _projected(self) -> None:
        self.container.wake_projection()
        assert wait_for_position(self.container.pool, CORE_PROJECTION, head_position(self.container.pool), 30)

    def alerts(self, alert_type: str, **params: Any) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.get("/v1/alerts", type=alert_type, limit=500, **params)["data"]
        return rows


@contextmanager
def running_ledger(settings: Settings, database_url: str, **overrides: Any) -> Iterator[Api]:
    """A ledger with the test clock allowed (and any other settings overridden), its store-fed
    projector running, and an admin key."""
    built = bootstrap(
        settings.model_copy(update={"allow_test_clock": True, **overrides}), database_url, run_projection=True
    )
    try:
        with TestClient(create_app(lambda: built), raise_server_exceptions=False) as client:
            _, raw = built.keys.mint(role="admin", name="tests")
            yield Api(client, built, bearer(raw))
    finally:
        built.close()
