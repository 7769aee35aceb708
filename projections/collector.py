"""The collector: the ledger's side of its payment backend (SPEC 8), run beside the policies.

The policies record each attempt to collect an invoice as a pending payment (method `backend`);
the collector
- submits each pending payment the backend does not know yet, under an idempotency key derived
  from the payment and its try, so submitting again (a crash, a timeout, two processes) is the
  same payment at the backend; a backend that is down leaves the payment pending, to be submitted
  on a later round; nothing is lost;
- asks the backend, every `poll_seconds`, the status of the payments it holds that are still
  pending (a callback that never came), and records each outcome;
- cancels at the backend a pending payment whose invoice no longer needs it (paid by hand,
  voided, written off), and records it canceled.
It finds its work in the payments read model and decides on the aggregates (the use cases load
them), so a row a little behind costs a round, never a wrong action."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, cast
from uuid import UUID

from psycopg_pool import ConnectionPool

from application import commands as c
from application.ledger import Ledger
from application.payment_collection import OUTCOMES
from domain.errors import DomainError
from domain.invoice import OPEN, Invoice
from domain.payment import BACKEND, PENDING, Payment
from infra.background import BackgroundLoop
from infra.payment_backend import BackendUnavailable, PaymentBackend

log = logging.getLogger(__name__)

ROUND = 100
SOURCE = "payment_backend"


class Collector:
    def __init__(
        self,
        pool: ConnectionPool,
        ledger: Ledger,
        backend: PaymentBackend,
        *,
        callback_url: str,
        poll_seconds: float = 60.0,
    ) -> None:
        self.pool = pool
        self.ledger = ledger
        self.backend = backend
        self.callback_url = callback_url
        self.poll_seconds = poll_seconds
        self._polled_at = float("-inf")

    def run_once(self, *, poll: bool | None = None) -> int:
        """One round: submit what waits, cancel what is no longer needed, and poll when due (or
        when `poll` says so). Answers how many payments moved."""
        done = self.submit_waiting() + self.cancel_unneeded()
        if poll or (poll is None and time.monotonic() - self._polled_at >= self.poll_seconds):
            self._polled_at = time.monotonic()
            done += self.poll_pending()
        return done

    # ------------------------------------------------------------------ rounds

    def submit_waiting(self) -> int:
        rows = self._rows(
            "SELECT id FROM rm_payments WHERE method = 'backend' AND status = 'pending'"
            " AND external_payment_id IS NULL ORDER BY seq LIMIT %s",
            ROUND,
        )
        return sum(self.submit(row["id"]) for row in rows)

    def poll_pending(self) -> int:
        rows = self._rows(
            "SELECT external_payment_id FROM rm_payments WHERE method = 'backend' AND status = 'pending'"
            " AND external_payment_id IS NOT NULL ORDER BY seq LIMIT %s",
            ROUND * 10,
        )
        return sum(self.poll(row["external_payment_id"]) for row in rows)

    def cancel_unneeded(self) -> int:
        rows = self._rows(
            "SELECT p.id FROM rm_payments p JOIN rm_invoices i ON i.id = p.invoice_id"
            " WHERE p.method = 'backend' AND p.status = 'pending' AND i.status <> 'open'"
            " ORDER BY p.seq LIMIT %s",
            ROUND,
        )
        return sum(self.cancel(row["id"]) for row in rows)

    # ------------------------------------------------------------------ one payment

    def submit(self, payment_id: UUID) -> int:
        payment = self._payment(payment_id)
        if payment is None or payment.external_payment_id is not None:
            return 0
        try:
            answer = self.backend.initiate(
                amount=payment.amount,
                currency=payment.currency,
                invoice_id=str(payment.invoice_id),
                customer_id=str(payment.customer_id),
                callback_url=self.callback_url,
                idempotency_key=f"{payment.id}:{payment.attempt}",
            )
        except BackendUnavailable as unavailable:
            log.warning("payment %s waits: the payment backend is unavailable (%s)", payment.id, unavailable)
            return 0
        cmd = c.SubmitPayment(payment.id, answer.external_payment_id, answer.payment_url)
        if not self._run(lambda: self.ledger.submit_payment(cmd, self._ctx())):
            return 0
        if answer.status in OUTCOMES:
            self.record(
                answer.external_payment_id, answer.status, answer.failure_code, answer.failure_message
            )
        return 1

    def poll(self, external_payment_id: str) -> int:
        try:
            answer = self.backend.status(external_payment_id)
        except BackendUnavailable as unavailable:
            log.warning("payment %s: status unknown (%s)", external_payment_id, unavailable)
            return 0
        if answer.status not in OUTCOMES:
            return 0
        return self.record(external_payment_id, answer.status, answer.failure_code, answer.failure_message)

    def cancel(self, payment_id: UUID) -> int:
        payment = self._payment(payment_id)
        if payment is None or payment.invoice_id is None:
            return 0
        invoice = self.ledger._find(payment.invoice_id)
        if isinstance(invoice, Invoice) and invoice.status == OPEN:
            return 0
        if payment.external_payment_id is not None:
            try:
                self.backend.cancel(payment.external_payment_id)
            except BackendUnavailable as unavailable:
                log.warning("payment %s: cancel failed (%s); tried again later", payment.id, unavailable)
                return 0
        cmd = c.CancelPayment(payment.id, "the invoice no longer needs it")
        return 1 if self._run(lambda: self.ledger.cancel_payment(cmd, self._ctx())) else 0

    def record(
        self, external_payment_id: str, status: str, failure_code: str | None, failure_message: str | None
    ) -> int:
        cmd = c.RecordBackendOutcome(
            external_payment_id=external_payment_id,
            status=status,
            failure_code=failure_code,
            failure_message=failure_message,
        )
        return 1 if self._run(lambda: self.ledger.record_backend_outcome(cmd, self._ctx())) else 0

    # ------------------------------------------------------------------ helpers

    def _payment(self, payment_id: UUID) -> Payment | None:
        payment = self.ledger._find(payment_id)
        if not isinstance(payment, Payment) or payment.method != BACKEND or payment.status != PENDING:
            return None
        return payment

    def _ctx(self) -> c.CommandContext:
        return c.CommandContext(occurred_at=self.ledger.now(), source=SOURCE, actor="collector")

    @staticmethod
    def _run(command: Callable[[], object]) -> bool:
        """Run a command; one the domain refuses (another process did it first) is not an error."""
        try:
            command()
        except DomainError as refused:
            log.info("collector: %s", refused)
            return False
        return True

    def _rows(self, query: str, *params: Any) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            return cast(list[dict[str, Any]], conn.execute(query, params).fetchall())


class BackgroundCollector(BackgroundLoop):
    def __init__(self, collector: Collector, poll_seconds: float) -> None:
        self.collector = collector
        super().__init__("collector", collector.run_once, poll_seconds=poll_seconds, max_idle_seconds=5.0)
