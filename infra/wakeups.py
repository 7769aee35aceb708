"""Wake-ups across processes: a process that appends tells the processes following the log (relay,
projector, webhook fan-out and dispatch) to look now, instead of at their next poll.

Within one process a write wakes the loops directly (`Container.wake_projection`). When the API
runs in processes of its own (`ledger up` serves it from worker processes), the word travels as a
PostgreSQL notification on a channel of the ledger's schema, so it reaches the followers wherever
they run. It is only a hint: the followers poll anyway, so a lost notification delays, never loses.

The sender never makes a request wait: `wake()` sets a flag; a thread of its own sends one
NOTIFY for all the wakes that came while it was sending, at most one every `MIN_INTERVAL_SECONDS`,
with `synchronous_commit` off (a notification needs no durability, and a transaction that notifies
takes an id and would otherwise wait for a WAL flush)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

MIN_INTERVAL_SECONDS = 0.002
RETRY_SECONDS = 1.0


def channel_of(schema: str) -> str:
    return f"ledger_appended_{schema}"


class WakeSender:
    def __init__(self, conninfo: str, channel: str) -> None:
        self.conninfo = conninfo
        self.channel = channel
        self.sent = 0
        self._wanted = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="wake-sender", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wanted.set()

    def close(self) -> None:
        self._stopped.set()
        self._wanted.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        conn: psycopg.Connection[tuple[object, ...]] | None = None
        try:
            while True:
                self._wanted.wait()
                if self._stopped.is_set():
                    return
                self._wanted.clear()
                try:
                    if conn is None or conn.closed:
                        conn = psycopg.connect(self.conninfo, autocommit=True)
                        conn.execute("SET synchronous_commit = off")
                    conn.execute("SELECT pg_notify(%s, '')", (self.channel,))
                    self.sent += 1
                except psycopg.Error as error:
                    log.warning(
                        "wake-up not sent (%s); the followers will find the writes at their next poll", error
                    )
                    conn = None
                    self._stopped.wait(RETRY_SECONDS)
                    continue
                time.sleep(MIN_INTERVAL_SECONDS)
        finally:
            if conn is not None:
                conn.close()


class WakeListener:
    """Calls `on_wake` for every notification on the channel (in a thread of its own)."""

    POLL_SECONDS = 0.5

    def __init__(self, conninfo: str, channel: str, on_wake: Callable[[], None]) -> None:
        self.conninfo = conninfo
        self.channel = channel
        self.on_wake = on_wake
        self.received = 0
        self._listening = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="wake-listener", daemon=True)
        self._thread.start()

    def wait_listening(self, timeout: float) -> bool:
        return self._listening.wait(timeout)

    def close(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stopped.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    self._listening.set()
                    while not self._stopped.is_set():
                        for _ in conn.notifies(timeout=self.POLL_SECONDS):
                            self.received += 1
                            self.on_wake()
            except psycopg.Error as error:
                self._listening.clear()
                log.warning("not listening for wake-ups (%s); polling only until it works again", error)
                self._stopped.wait(RETRY_SECONDS)
