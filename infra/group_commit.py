"""Group commit: appends from concurrent requests share one transaction (one fsync).

A single writer thread takes the first waiting job, gathers the jobs that arrive within a
bounded window (or until `max_items`), runs the work function once on all their items, and
only then resolves each job's future: nobody is answered before the commit that holds their
items. If the work fails, every job of the group gets the exception. The queue is bounded:
when it is full, `submit` refuses at once (`Overloaded`) instead of letting waits grow."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
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
