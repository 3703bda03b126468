"""A circuit breaker per remediation target. Pure: the clock is an argument.

    closed ──(threshold consecutive failures)──► open
    open ──(cool-down elapsed, on the next look)──► half_open
    half_open ──(the one trial succeeds)──► closed
    half_open ──(the trial fails)──► open (cool-down starts again)
    closed ──(a success)──► closed, failure count back to 0

While open, heal-check does not remediate the target; it says so once in the healing log
and leaves it to a human. The half-open state allows exactly one attempt.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from contracts.healing import BreakerSnapshot

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


class Transition(NamedTuple):
    previous: str
    state: str
    reason: str


class CircuitBreaker:
    def __init__(self, target: str, *, threshold: int, cooldown_s: float) -> None:
        self.target = target
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.state = CLOSED
        self.failures = 0
        self.opened_at: datetime | None = None
        self.last_failure: datetime | None = None
        self.last_success: datetime | None = None
        self.trial_in_flight = False

    # --- questions ------------------------------------------------------------------------

    def allows(self) -> bool:
        """May a remediation be attempted now? (call ``poll`` first to let time pass)"""
        if self.state == CLOSED:
            return True
        return self.state == HALF_OPEN and not self.trial_in_flight

    def reopens_in(self, now: datetime) -> float:
        if self.state != OPEN or self.opened_at is None:
            return 0.0
        return max(0.0, self.cooldown_s - (now - self.opened_at).total_seconds())

    @property
    def pristine(self) -> bool:
        return self.state == CLOSED and self.failures == 0

    # --- events ---------------------------------------------------------------------------

    def poll(self, now: datetime) -> Transition | None:
        if (
            self.state == OPEN
            and self.opened_at
            and (now - self.opened_at).total_seconds() >= self.cooldown_s
        ):
            self.state = HALF_OPEN
            self.trial_in_flight = False
            return Transition(
                OPEN, HALF_OPEN, f"cool-down of {self.cooldown_s:g}s elapsed: one trial allowed"
            )
        return None

    def attempted(self) -> None:
        if self.state == HALF_OPEN:
            self.trial_in_flight = True

    def succeeded(self, now: datetime) -> Transition | None:
        previous = self.state
        self.state, self.failures, self.trial_in_flight = CLOSED, 0, False
        self.opened_at = None
        self.last_success = now
        if previous != CLOSED:
            return Transition(previous, CLOSED, "remediation succeeded")
        return None

    def failed(self, now: datetime, why: str) -> Transition | None:
        self.failures += 1
        self.last_failure = now
        self.trial_in_flight = False
        if self.state == HALF_OPEN:
            self.state, self.opened_at = OPEN, now
            return Transition(HALF_OPEN, OPEN, f"the half-open trial failed: {why}")
        if self.state == CLOSED and self.failures >= self.threshold:
            self.state, self.opened_at = OPEN, now
            return Transition(CLOSED, OPEN, f"{self.failures} failed remediations in a row; last: {why}")
        return None

    # --- persistence (events) -----------------------------------------------------------------

    def snapshot(self) -> BreakerSnapshot:
        return BreakerSnapshot(
            target=self.target,
            state=self.state,
            failures=self.failures,
            opened_at=self.opened_at,
            last_failure=self.last_failure,
            last_success=self.last_success,
            cooldown_s=self.cooldown_s,
            threshold=self.threshold,
        )

    @classmethod
    def restore(cls, snapshot: BreakerSnapshot, *, threshold: int, cooldown_s: float) -> CircuitBreaker:
        """From the last breaker_changed event, under the current configuration. A trial
        that was in flight when the process died counts as not started."""
        breaker = cls(snapshot.target, threshold=threshold, cooldown_s=cooldown_s)
        breaker.state = snapshot.state
        breaker.failures = snapshot.failures
        breaker.opened_at = snapshot.opened_at
        breaker.last_failure = snapshot.last_failure
        breaker.last_success = snapshot.last_success
        return breaker
