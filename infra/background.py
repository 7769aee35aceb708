"""One way to run a unit of work over and over in a daemon thread: the relay, the projectors."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class BackgroundLoop:
    """Calls `step` again at once while it reports work done; when idle, waits (doubling from
    `poll_seconds` up to `max_idle_seconds`) unless `wake()` is called. A step that raises is
    logged, `on_error` runs, and the step is retried a second later: a failed batch rolled back
    and is done again, never skipped."""

    def __init__(
        self,
        name: str,
        step: Callable[[], int],
        *,
        poll_seconds: float = 0.05,
        max_idle_seconds: float = 0.1,
        on_error: Callable[[], None] | None = None,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.step = step
        self.poll_seconds = poll_seconds
        self.max_idle_seconds = max_idle_seconds
        self.on_error = on_error
        self.on_stop = on_stop
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=15)
        if self.on_stop is not None:
            self.on_stop()

    def _loop(self) -> None:
        idle = self.poll_seconds
        while not self._stop.is_set():
            try:
                done = self.step()
            except Exception:
                log.exception("%s failed; retrying", self.name)
                if self.on_error is not None:
                    self.on_error()
                self._stop.wait(1)
                continue
            if done:
                idle = self.poll_seconds
                continue
            self._wake.wait(idle)
            self._wake.clear()
            idle = min(idle * 2, self.max_idle_seconds)
