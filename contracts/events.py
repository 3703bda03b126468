"""Event envelope, typed payloads and the heartbeat, as msgspec Structs (JSON on the wire).

The envelope follows CloudEvents attribute names where they fit (id, source, type,
time, subject-like ``system``). Every event also carries a ``summary`` — the one
human-readable line (action / detail / result) that the activity log, SIEM export
and ``aoc audit replay`` show — so a consumer renders any event type, including
ones newer than itself, without knowing its payload.

Payloads are versioned: ``schema_version`` is the version of the payload's type (its
``VERSION``, default 1), and contracts/catalog.py upcasts older ones. Event types are
past-tense names.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

import msgspec

SCHEMA_VERSION = 1

Text = Annotated[str, msgspec.Meta(max_length=4096)]


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class Summary(msgspec.Struct, frozen=True, kw_only=True):
    action: str
    detail: str = ""
    # success | failed | rejected | noop | duplicate | auto_resolved | rule_generated | ...
    result: str = "success"


class Envelope(msgspec.Struct, kw_only=True):
    id: str
    source: str  # the producing service: an engine slug, "gateway", "cli"
    type: str  # past-tense type name, e.g. "lifecycle_changed"
    system: str  # the system the event is about; the <system> token of the subject
    time: datetime
    summary: Summary
    actor: str = "system"
    correlation_id: str = ""
    schema_version: int = SCHEMA_VERSION
    data: msgspec.Raw = msgspec.Raw(b"{}")
    # the lease epoch and instance of the engine instance that wrote it (0 / "": not an
    # engine, or written before leases): readers ignore state from a deposed epoch
    epoch: int = 0
    instance: str = ""

    def payload(self) -> Any:
        """The typed payload (upcast to its current version), or a plain dict for an event
        type this code does not know (contracts/catalog.py)."""
        from contracts.catalog import decode_payload  # the catalog imports every contract module

        return decode_payload(self.type, self.data, self.schema_version)


class CommandAudit(msgspec.Struct, kw_only=True):
    """The audit of the command whose state change an event records (one write per command)."""

    verb: str
    origin: str  # nats | http | cli | all (broadcast subject)
    outcome: str  # accepted
    message: str
    subject: str = ""


class LifecycleChanged(msgspec.Struct, kw_only=True):
    """A settled lifecycle change; the newest one of an engine is its durable desired state.

    v2: a change made by a command carries that command's audit in ``command``, so the
    command is one write. In v1 the audit was a separate ``command_handled`` event (and
    the desired state was also kept in KV); a v1 event reads as v2 with ``command=None``.
    """

    TYPE: ClassVar[str] = "lifecycle_changed"
    VERSION: ClassVar[int] = 2
    UPCASTERS: ClassVar[dict] = {1: lambda raw: raw}
    state: str  # stopped | starting | running | stopping
    previous: str
    desired: str  # running | stopped: what the engine will come back as after a crash
    reason: str = ""
    command_id: str | None = None
    command: CommandAudit | None = None


class CycleCompleted(msgspec.Struct, kw_only=True):
    TYPE: ClassVar[str] = "cycle_completed"
    loop: str
    run_id: str
    ok: bool
    result: str
    detail: str
    duration_ms: float
    manual: bool = False  # a trigger, not the schedule
    output: dict[str, Any] = {}
    # cumulative counters after this cycle, so a restarted engine resumes them
    total_runs: int = 0
    error_count: int = 0
    last_run: datetime | None = None


class CommandHandled(msgspec.Struct, kw_only=True):
    """The audit record of one control command, accepted or not."""

    TYPE: ClassVar[str] = "command_handled"
    command_id: str
    verb: str
    target: str
    origin: str  # nats | http | cli | all (broadcast subject)
    outcome: str  # accepted | noop | duplicate | rejected | failed
    message: str
    reason: str = ""
    subject: str = ""
    # a trigger's run: its result arrives later as cycle_completed with this run id, so
    # a job view knows who started it and when, also while it is still running
    run_id: str | None = None
    # this record also stands for `repeats` more refused commands of the same sender in
    # one window (services.runtime.refusals): counting rules count 1 + repeats
    repeats: int = 0
    body_sha256: str = ""  # digest of a refused body too malformed to decode (never the body)


class EntryAnnotated(msgspec.Struct, kw_only=True):
    """An operator's tags and comment on one activity entry (published by the gateway)."""

    TYPE: ClassVar[str] = "entry_annotated"
    entry_id: str  # the annotated event's id (its Nats-Msg-Id)
    entry_seq: int  # its stream sequence in AOC_EVENTS
    entry_system: str
    tags: list[str] = []
    comment: str = ""


class InstanceTookOver(msgspec.Struct, kw_only=True):
    """A standby instance became the engine's active one after the lease of another
    instance ran out (it died, or lost the bus)."""

    TYPE: ClassVar[str] = "instance_took_over"
    instance: str
    epoch: int
    previous_instance: str | None
    previous_epoch: int
    previous_boot_id: str | None = None


class ProcessCrashed(msgspec.Struct, kw_only=True):
    """A supervised process ended by a signal or a non-zero exit (published by the
    launcher, which saw the exit status; system = the process's engine slug or
    "gateway", source = "launcher")."""

    TYPE: ClassVar[str] = "process_crashed"
    pid: int
    exit_code: int | None  # None when a signal ended it
    signal: str | None  # e.g. "SIGKILL"
    uptime_s: float
    restarts: int = 0  # how many times the launcher restarted this process so far
    restart_in_s: float | None = None


class EngineRecovered(msgspec.Struct, kw_only=True):
    """An engine started after its previous process ended uncleanly: its last heartbeat
    was not the final one a clean shutdown sends (kill -9, OOM, a crash, power loss).
    Published by the engine itself, so the crash is on record under compose or
    Kubernetes too, where our launcher does not run."""

    TYPE: ClassVar[str] = "engine_recovered"
    previous_boot_id: str
    last_heartbeat: datetime  # when the previous process was last heard of (stream time)
    downtime_s: float  # from that heartbeat until this start
    previous_state: str = ""
    boot_id: str = ""
    total_runs: int = 0  # the counters this process resumed from
    error_count: int = 0


class ActivityRecorded(msgspec.Struct, kw_only=True):
    """Free-form engine activity that is not a cycle (e.g. 'model published')."""

    TYPE: ClassVar[str] = "activity_recorded"
    details: dict[str, Any] = {}


def new_event(
    *,
    system: str,
    payload: msgspec.Struct,
    summary: Summary,
    source: str | None = None,
    actor: str = "system",
    correlation_id: str = "",
    event_id: str | None = None,
) -> Envelope:
    return Envelope(
        id=event_id or new_id(),
        source=source or system,
        type=payload.TYPE,  # type: ignore[attr-defined]
        system=system,
        time=utcnow(),
        summary=summary,
        actor=actor,
        correlation_id=correlation_id,
        schema_version=getattr(type(payload), "VERSION", SCHEMA_VERSION),
        data=msgspec.Raw(msgspec.json.encode(payload)),
    )


# --- liveness -------------------------------------------------------------------------


class ProcessMetrics(msgspec.Struct, kw_only=True):
    pid: int
    rss_mb: float
    memory_percent: float
    cpu_percent: float
    threads: int
    uptime_seconds: float


class StatusSnapshot(msgspec.Struct, kw_only=True):
    """What an engine says about itself: the spec's per-system status fields."""

    state: str
    desired: str
    running: bool
    last_run: datetime | None
    error_count: int
    success_rate: float
    total_runs: int
    extras: dict[str, Any] = {}
    role: str = "active"  # active | standby (holds no lease: runs nothing, forwards commands)
    instance: str = ""
    # failed cycles (error_count may be the engine's own figure, e.g. SOC's escalations):
    # what a restarted engine resumes its counter from (services.runtime.recovery)
    cycle_errors: int | None = None


class Heartbeat(msgspec.Struct, kw_only=True):
    system: str
    boot_id: str  # one per engine process; with seq it orders snapshots across restarts
    seq: int
    time: datetime
    status: StatusSnapshot
    process: ProcessMetrics
    interval_s: float
    schema_version: int = SCHEMA_VERSION
    # which instance of the engine beats, and whether it holds the engine's lease: the
    # active one beats on aoc.hb.<system>, a standby on aoc.hb.<system>.<instance>
    instance: str = ""
    role: str = "active"  # active | standby
    epoch: int = 0
    host: str = ""
    started: datetime | None = None
    # the last heartbeat of a clean process shutdown: a restart after any other last
    # heartbeat is a recovery from an unclean end (services.runtime.recovery)
    final: bool = False


encode = msgspec.json.encode
envelope_decoder = msgspec.json.Decoder(Envelope)
heartbeat_decoder = msgspec.json.Decoder(Heartbeat)


def command_of(event: Envelope) -> CommandHandled | None:
    """The command audit an event carries, wherever it is stored: a ``command_handled``
    event (a command that changed nothing, was refused, or failed), or the
    ``lifecycle_changed`` event a command's state change wrote (one write per command)."""
    if event.type == CommandHandled.TYPE:
        return event.payload()
    if event.type != LifecycleChanged.TYPE:
        return None
    change = event.payload()
    audit = change.command
    if audit is None:
        return None
    return CommandHandled(
        command_id=change.command_id or "",
        verb=audit.verb,
        target=event.system,
        origin=audit.origin,
        outcome=audit.outcome,
        message=audit.message,
        reason=change.reason,
        subject=audit.subject,
    )
