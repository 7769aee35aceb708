"""`ledger up` lowers the priority of its followers' threads, not of the thread that goes on to
start the API processes; threads a follower starts later inherit its priority."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from infra.priority import lower_follower_threads

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's"
)


def test_a_follower_thread_and_the_threads_it_starts_run_at_the_lower_priority() -> None:
    ready, done = threading.Event(), threading.Event()
    seen: dict[str, int] = {}

    def follower() -> None:
        ready.set()
        assert done.wait(10)
        child = threading.Thread(target=lambda: seen.update(child=os.getpriority(os.PRIO_PROCESS, 0)))
        child.start()
        child.join()
        seen["follower"] = os.getpriority(os.PRIO_PROCESS, 0)

    main_before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    thread = threading.Thread(target=follower)
    thread.start()
    assert ready.wait(10)
    assert lower_follower_threads(10, [thread, threading.main_thread()]) == 1
    done.set()
    thread.join()
    assert seen == {"follower": 10, "child": 10}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main_before


def test_nothing_is_lowered_with_a_niceness_of_zero() -> None:
    assert lower_follower_threads(0) == 0
