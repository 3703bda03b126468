"""Response models of the read routes: what the OpenAPI document promises.

They describe the shapes the routes have always returned (the product spec's shapes are
a contract: fields are added, never dropped). Open-ended parts (an engine's own status
extras, its detail) are ``extra="allow"``: the named fields are promised, more may come.
The hottest reads (dashboard, activity log, health) encode their body with msgspec and
return it as is; for them the model only documents it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Open(BaseModel):
    """A shape with these fields at least."""

    model_config = ConfigDict(extra="allow")


# --- the dashboard ----------------------------------------------------------------------


class ViewStatus(BaseModel):
    nats_connected: bool
    replayed: bool
    applied_seq: int
    stream_last_seq: int
    lag: int
    stale: bool = Field(description="true while disconnected from NATS or still replaying")


class CrashNote(BaseModel):
    type: Literal["process_crashed", "engine_recovered"] | str
    time: str
    age_seconds: float
    detail: str


class SystemCard(Open):
    """One system's card; its engine's status extras ride along (``extra``)."""

    name: str
    label: str
    running: bool
    state: Literal["running", "stopped", "starting", "stopping", "unreachable"] | str
    schedule: str
    last_run: str | None
    error_count: int
    success_rate: float
    last_heartbeat: str | None
    heartbeat_age_seconds: float | None
    total_runs: int | None = Field(None, description="present once the engine has beaten")
    desired: str | None = Field(None, description="running | stopped: how it comes back after a crash")
    instances: int = Field(0, description="live instances of the engine (heartbeat within the timeout)")
    instances_active: int = Field(0, description="of them, the lease holder (0 or 1)")
    last_crash: CrashNote | None = Field(None, description="the last crash, for 10 minutes after it")


class Dashboard(BaseModel):
    timestamp: str
    emergency_mode: bool = Field(description="true when any system is not running")
    systems: dict[str, SystemCard]
    systems_running: int
    systems_total: int
    view: ViewStatus


# --- the activity log -------------------------------------------------------------------


class AnnotationView(BaseModel):
    id: str
    seq: int
    time: str
    actor: str
    tags: list[str]
    comment: str


class ActivityEntry(BaseModel):
    seq: int = Field(description="stream sequence in AOC_EVENTS (the cursor)")
    timestamp: str
    system: str
    action: str
    detail: str
    result: str
    actor: str
    type: str
    correlation_id: str
    id: str
    source: str
    tags: list[str]
    annotations: list[AnnotationView]


class Scanned(BaseModel):
    from_seq: int
    to_seq: int
    messages: int


class ActivityLog(BaseModel):
    events: list[ActivityEntry]
    count: int
    next_before: int | None = Field(description="the cursor of the next (older) page; null at the end")
    last_seq: int
    oldest_seq_in_memory: int
    source: Literal["memory", "stream"] = Field(
        "memory", description="stream: the page was read from the stream, below the in-memory window"
    )
    scanned: Scanned | None = Field(None, description="the stream slice a 'stream' page read")


# --- one system, the metrics --------------------------------------------------------------


class Instance(BaseModel):
    id: str
    pid: int
    host: str
    role: Literal["active", "standby"]
    epoch: int
    started: str | None
    last_heartbeat: str | None


class SystemDetail(Open):
    """The engine's own detail (loops, process, its extras), with the gateway's view."""

    state: str
    last_heartbeat: str | None
    instances: list[Instance]


class ProcessView(BaseModel):
    pid: int
    uptime_seconds: float
    memory_mb: float
    memory_percent: float
    cpu_percent: float
    threads: int
    reachable: bool


class DbPool(Open):
    size: int
    checked_in: int
    checked_out: int
    overflow: int


class Metrics(Open):
    timestamp: str
    uptime_seconds: float
    memory_mb: float
    memory_percent: float
    cpu_percent: float
    threads: int
    active_ws_connections: int
    active_sse_connections: int
    db_pool: DbPool | None = Field(
        None, description="the spec's pool, filled from the gateway's NATS connection (docs/decisions.md)"
    )
    jetstream: dict[str, Any]
    autonomous_systems_total: int
    autonomous_systems_running: int
    services: dict[str, ProcessView | None]
    projection: dict[str, int]


# --- health -------------------------------------------------------------------------------


class ModelHealth(Open):
    ready: bool
    lag: int


class EngineHealth(BaseModel):
    state: str
    last_heartbeat: str | None
    heartbeat_age_seconds: float | None


class HealthDetails(Open):
    status: Literal["ok", "degraded"]
    nats: dict[str, Any]
    stream: dict[str, Any]
    projection: dict[str, Any]
    readmodels: dict[str, ModelHealth]
    sources: dict[str, ModelHealth]
    snapshot: dict[str, Any] = Field(
        description="loaded (and from what), or why not (full_replay, reason); the last one written"
    )
    uptime_seconds: float
    engines: dict[str, EngineHealth]
    heartbeat_timeout_seconds: float


class Up(BaseModel):
    status: Literal["up", "down"]


# --- the SOC and ML views -----------------------------------------------------------------


class AlertView(Open):
    """A triaged alert: the alert's fields, its decision, verdict and playbook."""

    id: str
    time: str | None
    source: str
    title: str
    severity: str
    status: str
    decision: str
    scores: dict[str, float]
    model_version: str
    decided_at: str | None
    sla_due: str | None
    escalated_to_human_at: str | None
    feedback: dict[str, Any] | None
    playbook: dict[str, Any] | None
    findings: list[dict[str, Any]]
    cursor: int


class AlertList(BaseModel):
    alerts: list[AlertView]
    count: int
    next_before: int | None
    queued: int | None
    total_in_view: int


class DecisionView(Open):
    alert_id: str
    title: str
    severity: str
    source: str
    host: str
    user: str
    decision: str
    scores: dict[str, float]
    reasons: list[str]
    model_version: str
    decided_at: str | None
    sla_due: str | None
    status: str
    cursor: int


class DecisionList(BaseModel):
    decisions: list[DecisionView]
    count: int
    next_before: int | None


class SocStats(Open):
    totals: dict[str, int]
    alerts_in_view: int
    by_status: dict[str, int]
    playbook_results: dict[str, int]
    rejected: int
    applied_seq: int
    queued: int | None
    model_active: str | None
    model_in_use: str | None


class Hunts(BaseModel):
    hunts: list[dict[str, Any]]
    count: int


class ModelVersions(BaseModel):
    active: str | None
    soc_version: str | None
    versions: list[dict[str, Any]]
    count: int
    refusals: list[dict[str, Any]]


# --- advisories ----------------------------------------------------------------------------


class AdvisoryList(BaseModel):
    advisories: list[dict[str, Any]]
    total: int
    count: int
    limit: int
    offset: int
    next_offset: int | None
    counts_by_priority: dict[str, int]
    view: dict[str, Any]


class FeedList(BaseModel):
    feeds: list[dict[str, Any]]
    count: int
    failing: list[str]
    view: dict[str, Any]


# --- the factory ---------------------------------------------------------------------------


class FactoryStats(Open):
    view: dict[str, Any]


class RequirementDetail(Open):
    """A requirement with its submission, generation and history (times as stored)."""

    id: str
    title: str
    page_type: str
    route: str
    status: str
    priority: str
    requested_by: str
    has_code: bool
    created_at: str
    updated_at: str
    error: str | None
    history: list[dict[str, Any]]


class RequirementPreview(Open):
    id: str
    status: str
    template: str
    tsx_code: str
    file_path: str
    code_lines: int
    code_sha256: str


class TemplateInfo(Open):
    type: str
    label: str
    description: str


class ComponentInfo(Open):
    name: str
    module: str
    description: str
    props: list[dict[str, Any]]


class AdvisoryView(Open):
    id: str
    title: str
    priority: str


class ModelVersion(Open):
    version: str


class CommandResult(Open):
    """What an engine answered a command (contracts.commands.CommandReply) and when."""

    timestamp: str
    ok: bool
    system: str
    verb: str
    message: str
