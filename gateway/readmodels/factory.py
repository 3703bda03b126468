"""The factory's requirements as the gateway shows them: the factory's own events folded
by the same ledger the engine uses (pure; the gateway owns no factory state).

Not in snapshots: the ledger's types belong to the factory's contract, so after a
snapshot the view is rebuilt from the factory's own subject (a replay the server
filters, as long as the factory's history, not the whole stream's), then joins the feed.
"""

from __future__ import annotations

from contracts import subjects
from contracts.factory import FACTORY
from gateway.readmodels.base import FeedEvent, View
from services.factory.ledger import Ledger


class FactoryView(View):
    name = "factory"
    systems = frozenset({FACTORY})
    # rebuilt from these subjects, not from a snapshot (gateway/readmodels/snapshot.py)
    replay_subject = subjects.evt(FACTORY, ">")

    def __init__(self) -> None:
        super().__init__()
        self.ledger = Ledger()

    def apply(self, seq: int, event: FeedEvent, raw: bytes) -> None:
        self.ledger.apply_raw(seq, raw)

    def apply_stored(self, seq: int, raw: bytes, _at: object = None) -> None:
        """One event of the replay that rebuilds the view after a snapshot."""
        self.ledger.apply_raw(seq, raw)
