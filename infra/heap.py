"""The garbage collector of a long-running ledger process, set for its work.

A request or a batch makes thousands of short-lived objects (an ingest batch: about ten per event),
nearly all freed by reference counting; but CPython's cyclic collector runs every 700 new objects
and, now and then, walks every object the process holds: the app, its routes, the settings, the
connection pools. In an API process that walk cost about a third of the CPU of a batch of events.
So, once a process has built what it keeps for its lifetime, that is moved out of the collector's
sight (`gc.freeze`), and the collector runs less often: a collection counts the objects made
since the last one minus those freed, so a batch's objects, freed when it is answered, no longer
set it off while alive (a batch of 1,000 events holds about 15,000 at once). Cyclic garbage is
still collected."""

from __future__ import annotations

import gc

NEW_OBJECTS_BEFORE_A_COLLECTION = 100_000  # CPython's default is 700


def settle() -> None:
    """Call once the process has built what it keeps (its container, its app)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(NEW_OBJECTS_BEFORE_A_COLLECTION, older, oldest)
