"""The group committer: concurrent submissions share one call of the work function, each is
answered only after that call returned, and a failure reaches every waiting submission."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from infra.group_commit import CommitGroups, GroupCommitter, Overloaded, Stopped


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


# ---------------------------------------------------------------------------- CommitGroups


def _wait_until(condition: Callable[[], bool]) -> None:
    """Until the other threads got where the test needs them (bounded, not a timing assertion)."""
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the other threads never got there"
        time.sleep(0.001)


def test_a_lone_caller_writes_its_own_item_at_once_in_its_own_thread() -> None:
    seen: list[tuple[list[int], str]] = []

    def work(items: list[int]) -> list[int | BaseException]:
        seen.append((list(items), threading.current_thread().name))
        return [i + 1 for i in items]

    groups: CommitGroups[int, int] = CommitGroups(work, max_items=10)
    assert groups.run(1) == 2
    assert groups.run(5) == 6
    assert seen == [([1], threading.current_thread().name), ([5], threading.current_thread().name)]


def test_callers_arriving_while_one_writes_share_the_next_write_and_get_their_own_results() -> None:
    writing, release = threading.Event(), threading.Event()
    calls: list[list[int]] = []

    def work(items: list[int]) -> list[int | BaseException]:
        calls.append(list(items))
        if len(calls) == 1:
            writing.set()
            assert release.wait(5)
        return [i * 10 for i in items]

    groups: CommitGroups[int, int] = CommitGroups(work, max_items=10)
    with ThreadPoolExecutor(max_workers=5) as pool:
        first = pool.submit(groups.run, 0)
        assert writing.wait(5)
        others = [pool.submit(groups.run, n) for n in range(1, 5)]
        _wait_until(lambda: groups.waiting == 4)  # every other caller queued behind the first write
        release.set()
        assert first.result(5) == 0
        assert [f.result(5) for f in others] == [10, 20, 30, 40]
    assert calls == [[0], [1, 2, 3, 4]]
    assert (groups.groups, groups.items) == (2, 5)


def test_an_item_answered_with_an_exception_fails_its_caller_alone() -> None:
    writing, release = threading.Event(), threading.Event()

    def work(items: list[int]) -> list[int | BaseException]:
        if items == [0]:
            writing.set()
            assert release.wait(5)
        return [ValueError(f"refused {i}") if i == 2 else i for i in items]

    groups: CommitGroups[int, int] = CommitGroups(work, max_items=10)
    with ThreadPoolExecutor(max_workers=4) as pool:
        first = pool.submit(groups.run, 0)
        assert writing.wait(5)
        others = {n: pool.submit(groups.run, n) for n in (1, 2, 3)}
        _wait_until(lambda: groups.waiting == 3)
        release.set()
        assert first.result(5) == 0
        assert others[1].result(5) == 1 and others[3].result(5) == 3
        with pytest.raises(ValueError, match="refused 2"):
            others[2].result(5)


def test_a_write_that_fails_fails_every_caller_of_its_group_and_the_next_group_goes_on() -> None:
    writing, release = threading.Event(), threading.Event()

    def work(items: list[int]) -> list[int | BaseException]:
        if items == [0]:
            writing.set()
            assert release.wait(5)
            raise RuntimeError("the database went away")
        return list(items)

    groups: CommitGroups[int, int] = CommitGroups(work, max_items=10)
    with ThreadPoolExecutor(max_workers=3) as pool:
        first = pool.submit(groups.run, 0)
        assert writing.wait(5)
        later = [pool.submit(groups.run, n) for n in (1, 2)]
        _wait_until(lambda: groups.waiting == 2)
        release.set()
        with pytest.raises(RuntimeError, match="went away"):
            first.result(5)
        assert [f.result(5) for f in later] == [1, 2]


def test_a_group_holds_at_most_max_items() -> None:
    writing, release = threading.Event(), threading.Event()
    calls: list[list[int]] = []

    def work(items: list[int]) -> list[int | BaseException]:
        calls.append(list(items))
        if items == [0]:
            writing.set()
            assert release.wait(5)
        return list(items)

    groups: CommitGroups[int, int] = CommitGroups(work, max_items=2)
    with ThreadPoolExecutor(max_workers=6) as pool:
        first = pool.submit(groups.run, 0)
        assert writing.wait(5)
        others = [pool.submit(groups.run, n) for n in range(1, 6)]
        _wait_until(lambda: groups.waiting == 5)
        release.set()
        assert sorted([first.result(5), *(f.result(5) for f in others)]) == [0, 1, 2, 3, 4, 5]
    assert all(len(call) <= 2 for call in calls) and sum(len(call) for call in calls) == 6
