"""Whose turn it is on a busy machine: in `ledger up`, requests come first.

`ledger up` runs everything on one machine: the API in worker processes, and the followers of the
log (relay, projectors, policies, webhook deliveries, e-mails, the sealer) in threads of its own
process. When the cores are all busy, an ingest burst and the followers catching up with it take
turns; the followers are eventually consistent by design (a read that needs a write waits for it,
bounded), a request is answered only once its work is done. So the followers' threads run at a
lower scheduling priority (a nice value): they take what the requests leave, and on an idle
machine they run at full speed all the same. On Linux a thread's nice value is its own, and a
thread inherits its creator's; elsewhere this does nothing."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable

log = logging.getLogger(__name__)


def lower_follower_threads(niceness: int, threads: Iterable[threading.Thread] | None = None) -> int:
    """Give every running thread of this process but the main one (or these `threads`), and so
    every thread they start later, the nice value `niceness`. Answers how many it lowered."""
    if niceness <= 0 or not hasattr(os, "setpriority"):
        return 0
    lowered = 0
    for thread in threading.enumerate() if threads is None else threads:
        if thread is threading.main_thread() or thread.native_id is None:
            continue
        try:
            os.setpriority(os.PRIO_PROCESS, thread.native_id, niceness)
        except OSError as refused:  # not Linux (a thread id is no process id there), or not allowed
            log.info("followers keep their priority: %s", refused)
            return lowered
        lowered += 1
    return lowered
