"""The factory's requirements as the gateway shows them: the factory's requirement
events folded by the same ledger the engine uses (pure; the gateway owns no factory
state).

Not in snapshots: the ledger's types belong to the factory's contract. After a snapshot
the view is rebuilt from the requirement events alone (one subject per type, filtered by
the server, merged in stream order): a cost of how many requirements there were, not of
how long the stream is (the factory's own cycles are most of its events).
"""

from __future__ import annotations

from contracts import subjects
from contracts.factory import FACTORY, REQUIREMENT_EVENTS
from contracts.factory.ledger import Ledger
from gateway.readmodels.base import FeedEvent, View

TYPES = frozenset(REQUIREMENT_EVENTS)


class FactoryView(View):
    name = "factory"
    event_types = TYPES
    # rebuilt from these subjects, not from a snapshot (gateway/readmodels/registry.py)
    replay_subjects = tuple(subjects.evt(FACTORY, event_type) for event_type in sorted(TYPES))

    def __init__(self) -> None:
        super().__init__()
        self.ledger = Ledger()

    def wants(self, system: str, event_type: str) -> bool:
        return system == FACTORY and event_type in TYPES

    def apply(self, seq: int, event: FeedEvent, raw: bytes) -> None:
        self.ledger.apply_raw(seq, raw)

    def apply_stored(self, seq: int, raw: bytes) -> None:
        """One event of the replay that rebuilds the view after a snapshot."""
        self.ledger.apply_raw(seq, raw)
