"""Long-lived state and Python's cyclic collector.

A read model (the gateway's views, the SOC's decided alerts) holds hundreds of thousands
of objects for as long as the process runs. Each full pass of the collector walks all
of them, and the passes come more often the more a hot path allocates: measured on the
SOC's triage, a round of 2,000 alerts took 70 µs per alert with the collector as it is
and 40 µs with the state frozen. So what has survived is moved out of the collector's
passes (``gc.freeze``) once it is known to be long-lived.

What that costs: an object frozen here is still freed by reference counting when it is
dropped (evicted rows, replaced records: none of them are in cycles). A cycle frozen
while alive (a request in flight, an exception's traceback) and dropped later is not
collected while frozen; so at most every ``FULL_PASS_EVERY_S`` the frozen objects go back
to the collector for one full pass, and whatever survives it is frozen again.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterator

FULL_PASS_EVERY_S = 600.0
_last_full_pass = time.monotonic()


def keep_long_lived(*, full: bool = False) -> None:
    """What is alive now lives as long as the process: reap the young cycles, then take
    every survivor out of the collector's passes (with a full pass over everything at
    most every ``FULL_PASS_EVERY_S``: cycles frozen while alive and dropped since).
    ``full``: a full pass now (at the end of a start-up, for its own garbage)."""
    global _last_full_pass
    now = time.monotonic()
    if full or now - _last_full_pass >= FULL_PASS_EVERY_S:
        _last_full_pass = now
        gc.unfreeze()
        gc.collect()
    else:
        gc.collect(1)
    gc.freeze()


class Growth:
    """Long-lived state that grows a piece at a time (a read model following a stream):
    ``grew(amount)`` after each piece; once ``budget`` has come in since the last time,
    what is alive is kept out of the collector's passes (``keep_long_lived``). Without
    it, the young state is walked again by pass after pass until the next freeze: the
    gateway decoded a triage event at 12 µs per decision with it waiting, 2 µs with none
    (docs/performance.md). Nothing happens while a ``bulk_load`` holds the collector off."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.pending = 0
        self.freezes = 0

    def grew(self, amount: int) -> None:
        self.pending += amount
        if self.pending >= self.budget:
            self.pending = 0
            if gc.isenabled():
                keep_long_lived()
                self.freezes += 1


@contextlib.contextmanager
def bulk_load() -> Iterator[None]:
    """A load that builds a large long-lived state at once (a snapshot, a replay): no
    collector passes while it runs (each would walk the growing state again), then the
    state is kept out of them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
        keep_long_lived()
