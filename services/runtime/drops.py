"""Messages a NATS client dropped because a subscription fell behind (slow consumer).

nats-py drops a message when a subscription's pending queue passes its
``pending_msgs_limit`` / ``pending_bytes_limit`` and tells only the error callback
(``SlowConsumerError``, once per dropped message). Silently, that meant control requests
with no reply and no audit. ``DropCounter`` counts them per subscription, says when a log
line is due (the first drop, then at most one line per ``log_every`` seconds with the
running totals), and feeds ``/health/details`` and ``/metrics``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class DropCounter:
    log_every: float = 5.0
    total: int = 0
    by_subscription: Counter[str] = field(default_factory=Counter)
    last_subject: str = ""
    _logged_at: float | None = None
    _unlogged: int = 0

    def note(self, subscription: str, subject: str, now: float) -> int:
        """Count one dropped message; returns how many drops the due log line covers
        (0: no line now)."""
        self.total += 1
        self.by_subscription[subscription] += 1
        self.last_subject = subject[:200]
        self._unlogged += 1
        if self._logged_at is None or now - self._logged_at >= self.log_every:
            covered, self._unlogged, self._logged_at = self._unlogged, 0, now
            return covered
        return 0

    def as_dict(self) -> dict[str, object]:
        return {
            "slow_consumer_drops": self.total,
            "by_subscription": dict(self.by_subscription),
            "last_dropped_subject": self.last_subject or None,
        }
