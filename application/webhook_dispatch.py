"""Delivering webhooks: take what is due, sign it, post it, record the answer and what follows.

At least once: a delivery is done when a 2xx answer is recorded, and until then it stays due,
whatever stops in between (see the lease in `infra/webhook_store.py`). Receivers deduplicate on
`webhook-id`, the same on every attempt.

The schedule follows `clock` (the wall clock; tests inject one they move forward, so a
24-hour schedule runs in no time). `webhook-timestamp` is always the real time of sending: it is
what a receiver checks against its own clock (the reference library accepts 5 minutes either
way), so it can be neither a test clock's time nor an injected one.

Attempts run concurrently (at most `concurrency` in flight per process) on an asyncio loop of
their own, in a thread: a slow receiver holds one slot, never the ledger, and never a database
connection while it keeps us waiting."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TypeVar

from psycopg_pool import ConnectionPool

from application import commands as c
from application.webhooks import WebhookEndpoints, wall_clock
from domain.errors import DomainError
from domain.webhook_delivery import FAILED, GONE, RETRY, SUCCEEDED, judge
from infra.webhook_http import Answer, WebhookSender, signed_headers, tls_context
from infra.webhook_store import Claimed, Outcome, claim_due, disable_endpoint, record_outcome
from infra.webhook_vault import SecretVault, VaultKeyMismatch

log = logging.getLogger(__name__)
T = TypeVar("T")

# A delivery whose secret this process cannot read waits this long, without counting as a failure
# of the receiver's: the fix is ours (the same LEDGER_WEBHOOKS_SECRETS_KEY everywhere).
NOT_SENT_WAIT = timedelta(minutes=1)
LEASE_MARGIN = timedelta(seconds=45)


def symmetric_jitter() -> float:
    return random.uniform(-1.0, 1.0)


class WebhookDispatcher:
    def __init__(
        self,
        pool: ConnectionPool,
        vault: SecretVault,
        endpoints: WebhookEndpoints,
        *,
        allow_private: bool,
        timeout_seconds: float = 15.0,
        concurrency: int = 16,
        clock: Callable[[], datetime] = wall_clock,
        jitter: Callable[[], float] = symmetric_jitter,
    ) -> None:
        self.pool = pool
        self.vault = vault
        self.endpoints = endpoints
        self.allow_private = allow_private
        self.timeout_seconds = timeout_seconds
        self.concurrency = concurrency
        self.clock = clock
        self.jitter = jitter
        # Longer than any attempt can take, so a lease runs out only when its process is gone.
        self.lease = timedelta(seconds=timeout_seconds) + LEASE_MARGIN
        self._tls = tls_context()
        # Where the database work of attempts runs (None: asyncio's default threads). The
        # background runner gives it two threads of its own, so deliveries never hold more than
        # a couple of the pool's connections, whatever their number in flight.
        self.db: Executor | None = None

    def sender(self) -> WebhookSender:
        return WebhookSender(
            allow_private=self.allow_private,
            timeout_seconds=self.timeout_seconds,
            max_connections=max(self.concurrency, 10),
            ssl_context=self._tls,
        )

    def claim(self, limit: int) -> list[Claimed]:
        with self.pool.connection() as conn:
            return claim_due(conn, self.clock(), self.lease, limit)

    async def in_db(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.db, work)

    def deliver_due(self) -> int:
        """One round, for tests and benchmarks: every delivery due by `clock` now (up to
        `concurrency`) gets one attempt; answers how many. On a thread of its own, so it works
        whether or not the caller's thread runs an event loop."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="webhook-round") as one:
            return one.submit(asyncio.run, self._round()).result()

    async def _round(self) -> int:
        sender = self.sender()
        try:
            claimed = await self.in_db(lambda: self.claim(self.concurrency))
            await asyncio.gather(*(self.attempt(sender, one) for one in claimed))
            return len(claimed)
        finally:
            await sender.aclose()

    async def attempt(self, sender: WebhookSender, claimed: Claimed) -> None:
        try:
            secrets = [self.vault.open(claimed.endpoint_id, sid, row) for sid, row in claimed.secrets]
        except VaultKeyMismatch as unreadable:
            log.error("webhook %s not sent: %s", claimed.delivery_id, unreadable)
            await self._record(claimed, self._not_sent(claimed, str(unreadable)))
            return
        if not secrets:
            # The endpoint was deleted while the delivery was being taken: nothing signs any more.
            await self._record(claimed, self._not_sent(claimed, "the endpoint's secret is gone", "canceled"))
            return
        headers = signed_headers(secrets, claimed.msg_id, int(time.time()), claimed.body)
        answer = await sender.post(claimed.url, headers, claimed.body)
        await self._record(claimed, self._outcome(claimed, answer))

    def _not_sent(self, claimed: Claimed, why: str, status: str = "pending") -> Outcome:
        now = self.clock()
        return Outcome(
            status=status,
            outcome="not_sent",
            finished_at=now,
            error=why,
            next_attempt_at=now + NOT_SENT_WAIT if status == "pending" else None,
            failures=claimed.failures,
        )

    def _outcome(self, claimed: Claimed, answer: Answer) -> Outcome:
        now = self.clock()
        verdict = judge(
            answer.status_code,
            answer.retry_after,
            failures_before=claimed.failures,
            now=now,
            jitter=self.jitter(),
        )
        error = answer.error or (None if verdict.outcome == SUCCEEDED else f"HTTP {answer.status_code}")
        status = {SUCCEEDED: "succeeded", RETRY: "pending", FAILED: "failed", GONE: "failed"}[verdict.outcome]
        if verdict.outcome == GONE:
            error = "410 Gone: the endpoint is disabled"
        return Outcome(
            status=status,
            outcome=verdict.outcome,
            finished_at=now,
            duration_ms=answer.duration_ms,
            status_code=answer.status_code,
            error=error,
            response_excerpt=answer.body_excerpt,
            next_attempt_at=verdict.next_attempt_at,
            failures=claimed.failures if verdict.outcome == SUCCEEDED else claimed.failures + 1,
        )

    async def _record(self, claimed: Claimed, outcome: Outcome) -> None:
        await self.in_db(lambda: self._record_now(claimed, outcome))

    def _record_now(self, claimed: Claimed, outcome: Outcome) -> None:
        if outcome.outcome == GONE:
            self._disable(claimed)
        with self.pool.connection() as conn, conn.transaction():
            record_outcome(conn, claimed, outcome)
            if outcome.outcome == GONE:
                disable_endpoint(conn, claimed.endpoint_id, "answered 410 Gone", outcome.finished_at)

    def _disable(self, claimed: Claimed) -> None:
        """410 Gone: the endpoint is disabled, as an event of its own (the log first, so the
        fan-out applies it even if this process stops right after)."""
        ledger = self.endpoints.ledger
        ctx = c.CommandContext(
            occurred_at=ledger.now(),
            source="system",
            actor="webhooks",
            reason=f"delivery {claimed.delivery_id} attempt {claimed.attempt} answered 410 Gone",
            idempotency_key=f"webhook-gone:{claimed.delivery_id}:{claimed.attempt}",
        )
        try:
            self.endpoints.disable(claimed.endpoint_id, "answered 410 Gone", ctx)
        except DomainError as already:
            log.info("webhook endpoint %s not disabled again: %s", claimed.endpoint_id, already)


class BackgroundDispatcher:
    """Keeps up to `concurrency` attempts in flight: claims as slots free up, looks again when
    woken (the fan-out recorded deliveries) or every `poll_seconds` (retries falling due,
    deliveries fanned out by another process). Stopping lets the attempts in flight finish
    (each is bounded by the timeout)."""

    def __init__(self, dispatcher: WebhookDispatcher, poll_seconds: float = 1.0) -> None:
        self.dispatcher = dispatcher
        self.poll_seconds = poll_seconds
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="webhook-dispatch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    def stop(self) -> None:
        self._stopping = True
        self.wake()
        self._thread.join(timeout=self.dispatcher.timeout_seconds + 10)

    def _run(self) -> None:
        self.dispatcher.db = ThreadPoolExecutor(max_workers=2, thread_name_prefix="webhook-db")
        try:
            asyncio.run(self._main())
        finally:
            self.dispatcher.db.shutdown(wait=True)

    async def _main(self) -> None:
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        sender = self.dispatcher.sender()
        in_flight: set[asyncio.Task[None]] = set()
        # Claiming is a transaction: made for a few free slots at once, not for each one.
        refill = max(1, self.dispatcher.concurrency // 4)
        try:
            while not self._stopping:
                self._wake.clear()  # a wake from here on is for what this claim may miss
                free = self.dispatcher.concurrency - len(in_flight)
                claimed = await self._claim(free) if free >= refill or not in_flight else []
                for one in claimed:
                    task = asyncio.create_task(self._attempt(sender, one))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                if (claimed and len(claimed) == free) or (in_flight and free < refill):
                    # More may be due: wait for slots to free up, then claim again.
                    await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                # Nothing else due now: look again when woken (new deliveries) or after the poll
                # (retries falling due, deliveries fanned out by another process).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
            if in_flight:
                await asyncio.wait(in_flight, timeout=self.dispatcher.timeout_seconds + 5)
        finally:
            await sender.aclose()

    async def _claim(self, limit: int) -> list[Claimed]:
        try:
            return await self.dispatcher.in_db(lambda: self.dispatcher.claim(limit))
        except Exception:
            log.exception("claiming due webhook deliveries failed; retrying")
            await asyncio.sleep(1)
            return []

    async def _attempt(self, sender: WebhookSender, claimed: Claimed) -> None:
        try:
            await self.dispatcher.attempt(sender, claimed)
        except Exception:
            # Its lease runs out and the delivery is attempted again: nothing is lost.
            log.exception("webhook delivery %s attempt %d failed", claimed.delivery_id, claimed.attempt)
