"""One way to run a unit of work over and over in a daemon thread: the relay, the projectors."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class BackgroundLoop:
    """Calls `step` again at once while it reports work done; when idle, waits (doubling from
    `poll_seconds` up to `max_idle_seconds`) unless `wake()` is called. A step that raises is
    logged, `on_error` runs, and the step is retried after a pause that doubles while it keeps
    failing (from `RETRY_FIRST_SECONDS` up to `RETRY_MAX_SECONDS`): a failed batch rolled back
    and is done again, never skipped. The first failure of a run is logged with its traceback,
    the ones after it in one line each; `failures` and `last_error` say how it goes."""

    RETRY_FIRST_SECONDS = 1.0
    RETRY_MAX_SECONDS = 30.0

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
        self.failures = 0  # in a row
        self.last_error: str | None = None
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
            except Exception as error:
                self.failures += 1
                self.last_error = f"{type(error).__name__}: {error}"
                pause = min(self.RETRY_FIRST_SECONDS * 2 ** (self.failures - 1), self.RETRY_MAX_SECONDS)
                if self.failures == 1:
                    log.exception("%s failed; retrying in %.0f s", self.name, pause)
                else:
                    log.warning(
                        "%s failed again (%d times in a row): %s; retrying in %.0f s",
                        self.name,
                        self.failures,
                        self.last_error,
                        pause,
                    )
                if self.on_error is not None:
                    self.on_error()
                self._stop.wait(pause)
                continue
            if self.failures:
                log.info("%s works again after %d failures", self.name, self.failures)
                self.failures, self.last_error = 0, None
            if done:
                idle = self.poll_seconds
                continue
            self._wake.wait(idle)
            self._wake.clear()
            idle = min(idle * 2, self.max_idle_seconds)
