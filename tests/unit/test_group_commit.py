"""The group committer: concurrent submissions share one call of the work function, each is
answered only after that call returned, and a failure reaches every waiting submission."""

from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest

from infra.group_commit import GroupCommitter, Overloaded, Stopped


def test_submissions_arriving_together_share_one_commit_and_get_their_own_results() -> None:
    calls: list[list[int]] = []
    gate = threading.Event()

    def work(items: list[int]) -> list[int]:
        gate.wait(5)
        calls.append(list(items))
        return [i * 10 for i in items]

    committer: GroupCommitter[int, int] = GroupCommitter(
        work, window_seconds=0.2, max_items=100, max_waiting_jobs=10
    )
    try:
        futures = [committer.submit([1, 2]), committer.submit([3]), committer.submit([4, 5, 6])]
        assert not any(f.done() for f in futures)  # nobody is answered before the commit
        gate.set()
        assert [f.result(5) for f in futures] == [[10, 20], [30], [40, 50, 60]]
        assert calls == [[1, 2, 3, 4, 5, 6]]
        assert (committer.groups, committer.jobs) == (1, 3)
    finally:
        committer.close()


def test_a_group_stops_growing_at_max_items() -> None:
    calls: list[list[int]] = []
    committer: GroupCommitter[int, int] = GroupCommitter(
        lambda items: calls.append(items) or items, window_seconds=0.5, max_items=2, max_waiting_jobs=10
    )
    try:
        futures = [committer.submit([n]) for n in range(4)]
        assert [f.result(5) for f in futures] == [[0], [1], [2], [3]]
        assert all(len(call) <= 2 for call in calls)
    finally:
        committer.close()


def test_a_failed_commit_fails_every_waiting_submission() -> None:
    def work(items: list[int]) -> list[int]:
        raise RuntimeError("the database went away")

    committer: GroupCommitter[int, int] = GroupCommitter(
        work, window_seconds=0.05, max_items=100, max_waiting_jobs=10
    )
    try:
        futures = [committer.submit([1]), committer.submit([2])]
        for future in futures:
            with pytest.raises(RuntimeError, match="went away"):
                future.result(5)
    finally:
        committer.close()


def test_a_full_queue_refuses_at_once_and_a_closed_committer_refuses_new_work() -> None:
    gate = threading.Event()
    committer: GroupCommitter[int, int] = GroupCommitter(
        lambda items: gate.wait(5) and items, window_seconds=0, max_items=1, max_waiting_jobs=1
    )
    try:
        first = committer.submit([1])
        waiting: list[Future[list[int]]] = []
        with pytest.raises(Overloaded):
            for n in range(10):
                waiting.append(committer.submit([n]))
        gate.set()
        assert first.result(5) == [1]
    finally:
        committer.close()
    with pytest.raises(Stopped):
        committer.submit([9])
