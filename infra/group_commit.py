"""Group commit: appends from concurrent requests share one transaction (one fsync).

`GroupCommitter` (ingest, whose requests wait on the event loop, not in threads): a single
writer thread takes the first waiting job, gathers the jobs that arrive within a bounded window
(or until `max_items`), runs the work function once on all their items, and only then resolves
each job's future: nobody is answered before the commit that holds their items. If the work
fails, every job of the group gets the exception. The queue is bounded: when it is full,
`submit` refuses at once (`Overloaded`) instead of letting waits grow.

`CommitGroups` (commands, whose requests wait in threads): no thread of its own, see there."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import typing
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Overloaded(Exception):
    """Too many appends are waiting; the caller should retry later."""


class Stopped(Exception):
    """The committer was stopped before the job could be committed."""


@dataclass
class _Job(Generic[T, R]):
    items: list[T]
    future: Future[list[R]]


class GroupCommitter(Generic[T, R]):
    def __init__(
        self,
        work: Callable[[list[T]], list[R]],
        *,
        window_seconds: float,
        max_items: int,
        max_waiting_jobs: int,
        name: str = "group-commit",
    ) -> None:
        self.work = work
        self.window_seconds = window_seconds
        self.max_items = max_items
        self._queue: queue.Queue[_Job[T, R] | None] = queue.Queue(maxsize=max_waiting_jobs)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.groups = 0  # how many transactions; with `jobs`, shows how much sharing happens
        self.jobs = 0
        self._thread.start()

    def submit(self, items: list[T]) -> Future[list[R]]:
        """Queue items for the next group; the future resolves after their commit."""
        if self._stopped.is_set():
            raise Stopped("the group committer is stopped")
        job: _Job[T, R] = _Job(items, Future())
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise Overloaded("too many appends are waiting") from None
        return job.future

    def run(self, items: list[T]) -> list[R]:
        """Submit and wait for the commit."""
        return self.submit(items).result()

    def close(self, timeout: float = 10.0) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout=timeout)
        while True:  # anything left is refused, never left waiting
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.future.set_exception(Stopped("the group committer stopped"))

    def _gather(self, first: _Job[T, R]) -> list[_Job[T, R]]:
        jobs = [first]
        count = len(first.items)
        deadline = time.monotonic() + self.window_seconds
        while count < self.max_items:
            remaining = deadline - time.monotonic()
            try:
                job = self._queue.get_nowait() if remaining <= 0 else self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if job is None:
                self._stopped.set()
                break
            jobs.append(job)
            count += len(job.items)
        return jobs

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = self._gather(first)
            items = [item for job in jobs for item in job.items]
            try:
                results = self.work(items)
            except Exception as failure:  # every waiting request must hear of it
                log.exception("group commit of %d items failed", len(items))
                for job in jobs:
                    job.future.set_exception(failure)
            else:
                self.groups += 1
                self.jobs += len(jobs)
                start = 0
                for job in jobs:
                    job.future.set_result(results[start : start + len(job.items)])
                    start += len(job.items)
            if self._stopped.is_set() and self._queue.empty():
                return


class _Slot(Generic[T, R]):
    __slots__ = ("done", "failure", "item", "lead", "result", "turn")

    def __init__(self, item: T) -> None:
        self.item = item
        self.turn = threading.Event()  # set when answered, or when it is this slot's turn to lead
        self.lead = False
        self.done = False
        self.result: R | None = None
        self.failure: BaseException | None = None


class CommitGroups(Generic[T, R]):
    """Group commit without a thread of its own, for callers that wait in threads anyway (the
    API's command handlers): whoever arrives while no transaction is being written writes
    one at once, for itself alone (a lone writer waits for nobody and never changes threads);
    whoever arrives meanwhile waits, and the first of those then writes one transaction for all
    of them (up to `max_items`). So the transactions grow with the concurrency, by themselves.

    `work` answers one result per item, in order; it may answer an exception for an item,
    which `run` raises to that item's caller alone. If `work` raises, every caller of the group
    gets the exception."""

    def __init__(self, work: Callable[[list[T]], list[R | BaseException]], *, max_items: int) -> None:
        self.work = work
        self.max_items = max_items
        self._lock = threading.Lock()
        self._waiting: list[_Slot[T, R]] = []
        self._writing = False
        self.groups = 0
        self.items = 0

    @property
    def waiting(self) -> int:
        """Callers waiting for a turn (not counting one whose transaction is being written)."""
        with self._lock:
            return len(self._waiting)

    def run(self, item: T) -> R:
        slot: _Slot[T, R] = _Slot(item)
        with self._lock:
            self._waiting.append(slot)
            slot.lead = not self._writing
            self._writing = True
        while not slot.done:
            if not slot.lead:
                slot.turn.wait()
                slot.turn.clear()
            if slot.lead:
                self._write_group()
        if slot.failure is not None:
            raise slot.failure
        return typing.cast(R, slot.result)

    def _write_group(self) -> None:
        """Write the waiting items (this caller's among them: it is the first waiting), answer
        them, and hand the turn to the first still waiting, if any. Whatever happens, nobody of
        the group is left waiting, and the turn goes on."""
        with self._lock:
            group, self._waiting = self._waiting[: self.max_items], self._waiting[self.max_items :]
        results: list[R | BaseException] | None = None
        failure: BaseException = Stopped("the write of this group was interrupted")
        try:
            results = self.work([slot.item for slot in group])
        except Exception as error:  # every caller of the group hears of it
            log.exception("a group commit of %d items failed", len(group))
            failure = error
        finally:
            if results is not None:
                self.groups += 1
                self.items += len(group)
            for n, slot in enumerate(group):
                outcome = failure if results is None else results[n]
                if isinstance(outcome, BaseException):
                    slot.failure = outcome
                else:
                    slot.result = outcome
                slot.done = True
                slot.lead = False
                slot.turn.set()
            with self._lock:
                if self._waiting:
                    self._waiting[0].lead = True
                    self._waiting[0].turn.set()
                else:
                    self._writing = False
