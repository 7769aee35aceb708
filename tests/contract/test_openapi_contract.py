"""A bounded schemathesis run over the whole OpenAPI document (issue 11, observation 7): for
every operation, generated requests (valid and invalid) get no server error, no status the
document does not declare, and answers that match the declared schemas and media types.

In-process over ASGI, against a real PostgreSQL schema of its own, with an admin key. Bounded by
the number of examples per operation, so the run takes about a minute here."""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from infra.bootstrap import Container, bootstrap
from infra.settings import Settings
from projections.webhook_fanout import BackgroundFanout, WebhookFanout

# 15 keeps the run near a minute and a half on the 2-core CI machine; raise it to explore.
EXAMPLES_PER_OPERATION = int(os.environ.get("LEDGER_CONTRACT_EXAMPLES", "15"))
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance]


@pytest.fixture(scope="module")
def contract_container(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    settings = Settings(
        database_url=database_url,
        database_schema=f"t_{uuid.uuid4().hex[:12]}",
        data_dir=Path(tmp_path_factory.mktemp("contract")),
        database_pool_size=4,
        projection_poll_seconds=0.02,
        read_wait_timeout_seconds=0.5,
        stripe_webhook_secret="whsec_contract",  # configured: unsigned bodies are refused (400)
        _env_file=None,  # type: ignore[call-arg]
    )
    built = bootstrap(settings, database_url, run_projection=True)
    # The webhook fan-out as well, which `min_position` on webhook reads waits for (it runs in
    # `ledger up` and `ledger policies`); not the dispatcher: a contract run sends nothing out.
    built.webhook_fanout = BackgroundFanout(WebhookFanout(built.pool, built.ledger), 0.02)
    built.webhook_fanout.start()
    try:
        yield built
    finally:
        built.close()


@pytest.fixture(scope="module")
def admin_headers(contract_container: Container) -> dict[str, str]:
    _, raw = contract_container.keys.mint(role="admin", name="schemathesis")
    return {"Authorization": f"Bearer {raw}"}


# The app is built at import (schemathesis reads its document then); schemathesis runs its
# lifespan around each operation's test, which takes the module's container from `SERVING`. The
# container it gets is marked closed, so each lifespan's end leaves the shared one open.
# (`from_fixture` would build all this lazily, but it relies on a pytest internal gone in pytest 9.)
SERVING: dict[str, Container] = {}


class _Loading:
    """What the lifespan gets while schemathesis loads the document at import: no container."""

    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    def close(self) -> None:
        pass


def _serving() -> Container:
    if "container" not in SERVING:
        return cast(Container, _Loading())
    return dataclasses.replace(SERVING["container"], closed=True)


APP = create_app(_serving)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def serving(contract_container: Container) -> Iterator[None]:
    SERVING["container"] = contract_container
    yield
    SERVING.clear()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize="LEDGER_CONTRACT_EXAMPLES" not in os.environ,  # CI: the same cases every run
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_its_openapi_document_says(
    case: Any, admin_headers: dict[str, str]
) -> None:
    case.call_and_validate(headers=admin_headers, checks=CHECKS)
