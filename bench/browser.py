"""What the dashboard's browser tests and its benchmark share: the product served by uvicorn on a
free port (the real API over a real container), and Debian's Chromium driven by Playwright.

The browser is the system's (`apt-get install chromium`, as .ci/run does): Playwright's own
browser download (`playwright install`) is never used."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from api.app import create_app
from infra.bootstrap import Container
from infra.embedded import free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> Path | None:
    """The system Chromium, if installed."""
    if CHROMIUM.exists():
        return CHROMIUM
    found = shutil.which("chromium")
    return Path(found) if found else None


def launch_chromium(playwright: Any) -> Any:
    path = chromium_path()
    if path is None:
        raise RuntimeError("no system Chromium: install it with `apt-get install -y chromium`")
    return playwright.chromium.launch(executable_path=str(path), args=CHROMIUM_ARGS)


@contextmanager
def serving(container: Container) -> Iterator[str]:
    """The API (dashboard included) over `container`, on a free loopback port, until the block
    ends; yields its base URL. The app's lifespan closes the container when it stops."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(lambda: container), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="dashboard-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
