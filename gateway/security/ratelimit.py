"""Per-identity rate limit on mutating requests: a token bucket per identity, in memory.

Fails closed: when it cannot track one more identity (``max_keys`` busy buckets), it
refuses with LimiterUnavailable instead of letting requests through unmetered.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class LimiterUnavailable(Exception):
    """The limiter cannot decide; the caller must refuse the request."""


class RateLimiter:
    def __init__(
        self,
        per_minute: float,
        burst: int,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = per_minute / 60.0  # tokens per second
        self.burst = float(burst)
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def _level(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def _make_room(self, now: float) -> None:
        # a bucket that has refilled is the same as no bucket: forget the oldest ones
        for key in list(self._buckets):
            if len(self._buckets) < self.max_keys:
                return
            if self._level(key, now) >= self.burst:
                del self._buckets[key]
        if len(self._buckets) >= self.max_keys:
            raise LimiterUnavailable(f"rate limiter tracks {self.max_keys} busy identities")

    def retry_after(self, key: str) -> float:
        """Take one token for ``key``: 0 when allowed, else the seconds until one is free."""
        now = self._clock()
        if key not in self._buckets and len(self._buckets) >= self.max_keys:
            self._make_room(now)
        tokens = self._level(key, now)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens - 1.0, now)
        self._buckets.move_to_end(key)
        return 0.0
