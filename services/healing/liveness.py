"""Is an engine alive and doing its work? Pure: observations and the clock in, a verdict out.

An observation is what heal-check can see from outside: the engine's desired state (KV),
its last heartbeat (with the stream's timestamp, one clock for everyone) and, when it is
alive, its loops from the ``detail`` control reply.

    desired stopped                          -> stopped      (an operator's decision: never healed)
    no heartbeat within the timeout          -> unreachable  (process dead or cut off: the supervisor's job)
    never heard from, heal-check just started -> unknown
    alive, state != desired for a while      -> stalled      (e.g. stuck starting/stopping)
    alive, control endpoint silent a while   -> stalled
    alive, a loop has not completed a cycle
      for max(stall_factor x interval, floor) -> stalled      (a hung cycle: a restart command helps)
    otherwise                                -> healthy
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from contracts.healing import HEALTHY, STALLED, STOPPED, UNKNOWN, UNREACHABLE


@dataclass(frozen=True)
class LoopView:
    name: str
    interval: float
    active: bool
    last_run: datetime | None


@dataclass(frozen=True)
class Observation:
    slug: str
    desired: str  # running | stopped
    beat_state: str | None = None  # the state in the last heartbeat
    beat_boot: str | None = None
    beat_age: float | None = None  # seconds since the stream stored the last heartbeat
    loops: list[LoopView] | None = None  # None: not asked (not alive) or no answer
    detail_error: str | None = None  # why the detail request failed, when it did


@dataclass(frozen=True)
class Thresholds:
    heartbeat_timeout: float
    stall_factor: float
    stall_floor: float
    divergence_grace: float
    startup_grace: float


@dataclass(frozen=True)
class Verdict:
    health: str
    reason: str


@dataclass
class Memory:
    """What classification remembers between observations of one engine."""

    diverged_since: datetime | None = None
    unanswered_since: datetime | None = None  # heartbeats, but no answer to a detail request
    # (boot id, loop) -> when a loop was first seen without any completed cycle
    loop_first_seen: dict[tuple[str, str], datetime] = field(default_factory=dict)


def classify(
    obs: Observation, now: datetime, limits: Thresholds, memory: Memory, healer_uptime: float
) -> Verdict:
    if obs.desired == STOPPED:
        memory.diverged_since = None
        return Verdict(STOPPED, "stopped by an operator (desired state: stopped)")
    if obs.beat_age is None:
        memory.diverged_since = None
        if healer_uptime < limits.startup_grace:
            return Verdict(UNKNOWN, "no heartbeat seen yet")
        return Verdict(UNREACHABLE, "no heartbeat ever recorded")
    if obs.beat_age > limits.heartbeat_timeout:
        memory.diverged_since = None
        return Verdict(
            UNREACHABLE, f"no heartbeat for {obs.beat_age:.1f}s (timeout {limits.heartbeat_timeout:g}s)"
        )

    if obs.beat_state != obs.desired:
        memory.diverged_since = memory.diverged_since or now
        lasting = (now - memory.diverged_since).total_seconds()
        if lasting >= limits.divergence_grace:
            return Verdict(
                STALLED, f"reports {obs.beat_state} for {lasting:.0f}s while it should be {obs.desired}"
            )
        return Verdict(HEALTHY, f"{obs.beat_state}, becoming {obs.desired}")
    memory.diverged_since = None

    if obs.detail_error is not None:
        # a process that has just started, or is busy for a moment, gets the same grace
        memory.unanswered_since = memory.unanswered_since or now
        lasting = (now - memory.unanswered_since).total_seconds()
        if lasting >= limits.divergence_grace:
            why = f"heartbeats arrive but its control endpoint has not answered for {lasting:.0f}s"
            return Verdict(STALLED, f"{why}: {obs.detail_error}")
        return Verdict(HEALTHY, f"heartbeat {obs.beat_age:.1f}s ago; control endpoint slow to answer")
    memory.unanswered_since = None
    for loop in obs.loops or []:
        if not loop.active:
            continue
        allowed = max(limits.stall_factor * loop.interval, limits.stall_floor)
        if loop.last_run is not None:
            silent = (now - loop.last_run).total_seconds()
        else:
            first = memory.loop_first_seen.setdefault((obs.beat_boot or "", loop.name), now)
            silent = (now - first).total_seconds()
        if silent > allowed:
            return Verdict(
                STALLED,
                f"loop {loop.name!r} has not completed a cycle for {silent:.0f}s (allowed {allowed:g}s)",
            )
    return Verdict(HEALTHY, f"{obs.beat_state}, heartbeat {obs.beat_age:.1f}s ago")


def loops_from_detail(detail: dict) -> list[LoopView]:
    """The loops in an engine's ``detail`` reply."""
    views = []
    for loop in detail.get("loops") or []:
        last_run = loop.get("last_run")
        views.append(
            LoopView(
                name=str(loop.get("name")),
                interval=float(loop.get("interval_seconds") or 0),
                active=bool(loop.get("active")),
                last_run=datetime.fromisoformat(last_run.replace("Z", "+00:00")) if last_run else None,
            )
        )
    return views
