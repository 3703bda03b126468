"""The self-healing contract: what `heal-check` writes and who may read it.

- Its findings and actions are events on ``aoc.evt.heal-check.<type>``:
  ``healing_recorded`` (one healing-log entry: a detection, a remediation, a recovery,
  a skip) and ``breaker_changed`` (a circuit breaker moved between closed, open and
  half-open). The engine rebuilds its healing log and breakers from them at start.
- It probes the bus with its own small stream / KV bucket / object store, so a health
  probe never writes into the audit log or into another engine's data.
- Remediation of a live engine is an ordinary control command,
  ``aoc.ctl.<slug>.restart`` with ``{"actor": "heal-check", "reason": ...}``, audited
  like any other (docs/healing.md says who does what with the launcher's supervisor).
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

import msgspec
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    ObjectStoreConfig,
    StorageType,
    StreamConfig,
)

from contracts.settings import Settings

HEALER = "heal-check"  # the actor of every command heal-check sends

PROBE_STREAM = "AOC_HEALTH_PROBE"
PROBE_SUBJECT = "aoc.probe.heal-check"  # outside aoc.evt / aoc.ctl: never audited, never a command
PROBE_BUCKET = "aoc_health_probe"  # KV and object store share the name (different kinds)

HOUR = 3600.0

# engine health, as heal-check classifies it (services/healing/liveness.py)
HEALTHY = "healthy"
STALLED = "stalled"  # alive (heartbeats) but not doing its work: a restart command can help
UNREACHABLE = "unreachable"  # no heartbeats: the process is dead or cut off; the supervisor's job
STOPPED = "stopped"  # an operator wants it stopped: never healed
UNKNOWN = "unknown"  # not seen yet, and heal-check itself has only just started


class HealingEntry(msgspec.Struct, kw_only=True):
    """One line of the healing log."""

    time: datetime
    target: str  # an engine slug, or "subsystem:<name>"
    event: str  # detected | restart_requested | recovered | escalated | skipped | remediation_failed | ...
    detail: str
    outcome: str = "success"  # success | failed | skipped | pending
    problem: str = ""  # stalled | unreachable | degraded | stale | ...
    breaker: str = ""  # the target's breaker state after this entry, when it has one


class HealingRecorded(msgspec.Struct, kw_only=True):
    TYPE: ClassVar[str] = "healing_recorded"
    entry: HealingEntry


class BreakerSnapshot(msgspec.Struct, kw_only=True):
    target: str
    state: str  # closed | open | half_open
    failures: int = 0  # consecutive failed remediations
    opened_at: datetime | None = None
    last_failure: datetime | None = None
    last_success: datetime | None = None
    cooldown_s: float = 0.0
    threshold: int = 0


class BreakerChanged(msgspec.Struct, kw_only=True):
    TYPE: ClassVar[str] = "breaker_changed"
    breaker: BreakerSnapshot
    previous: str
    reason: str = ""


def probe_stream(settings: Settings) -> StreamConfig:
    return StreamConfig(
        name=PROBE_STREAM,
        description="heal-check's write/read probe of JetStream (one message, overwritten)",
        subjects=[PROBE_SUBJECT],
        storage=StorageType.FILE,  # the probe must exercise the same disk path as the audit log
        max_msgs_per_subject=1,
        max_age=HOUR,
        discard=DiscardPolicy.OLD,
        num_replicas=settings.stream_replicas,
    )


def probe_bucket(settings: Settings) -> KeyValueConfig:
    return KeyValueConfig(
        bucket=PROBE_BUCKET,
        description="heal-check's write/read probe of the KV store",
        history=1,
        ttl=HOUR,
        storage=StorageType.FILE,
        replicas=settings.stream_replicas,
    )


def probe_object_store(settings: Settings) -> ObjectStoreConfig:
    return ObjectStoreConfig(
        bucket=PROBE_BUCKET,
        description="heal-check's write/read probe of the object store (one object per probe, 1 h TTL)",
        ttl=HOUR,
        max_bytes=1024 * 1024,
        storage=StorageType.FILE,
        replicas=settings.stream_replicas,
    )
