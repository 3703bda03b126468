"""The SOC contract: alerts in, analyst feedback in, triage decisions out.

Subjects and streams
- ``aoc.in.soc.alerts`` — intake for raw producers (core NATS; ``nats req`` or ``nats pub``).
  The body is one alert object or a JSON array of them. The soc-cycle process validates
  it and replies ``IntakeReply``: accepted (after the alerts are stored) or an error that
  names the offending field. Nothing invalid is enqueued; a batch is all-or-nothing.
- ``aoc.q.soc.alerts`` — validated alerts, captured by the work-queue stream
  ``AOC_ALERTS``; the gateway's ``POST /api/v1/soc/alerts`` publishes here directly.
  Triage pulls from it with the durable consumer ``soc-triage`` (shared by scaled-out
  instances) and decodes every message again, so a producer that bypasses the intake
  still cannot put a half-parsed alert in front of the models.
- ``aoc.in.soc.feedback`` — analyst verdicts from raw producers (validated and enriched
  with the alert by the soc-cycle process, like alerts).
- ``aoc.q.soc.feedback`` — validated, enriched verdicts, kept in ``AOC_FEEDBACK`` (limits
  retention: it is the labelled training set). ml-retrain consumes it with a durable
  consumer; the SOC follows it to close escalations.

Events (on ``aoc.evt.soc-cycle.<type>``) are the ``TYPE``s of the payloads below.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import socket
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from contracts.events import new_id, utcnow
from contracts.settings import Settings
from contracts.streams import DAY, ensure_stream

ALERT_INTAKE = "aoc.in.soc.alerts"
ALERT_QUEUE = "aoc.q.soc.alerts"
FEEDBACK_INTAKE = "aoc.in.soc.feedback"
FEEDBACK_QUEUE = "aoc.q.soc.feedback"

ALERTS_STREAM = "AOC_ALERTS"
FEEDBACK_STREAM = "AOC_FEEDBACK"
TRIAGE_CONSUMER = "soc-triage"
ML_FEEDBACK_CONSUMER = "ml-retrain-feedback"

MAX_BATCH = 1000  # alerts per intake message / HTTP request
MAX_RAW_BYTES = 16_384  # the `raw` original event, encoded

SEVERITIES = ("informational", "low", "medium", "high", "critical")
Severity = Literal["informational", "low", "medium", "high", "critical"]
DecisionKind = Literal["auto_resolve", "escalate", "contain"]
Verdict = Literal["true_positive", "false_positive", "benign"]

# ids travel as Nats-Msg-Id headers and KV-ish keys: keep them to safe characters
AlertId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
ShortName = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Technique = Annotated[str, msgspec.Meta(pattern=r"^T\d{4}(\.\d{3})?$")]
Cve = Annotated[str, msgspec.Meta(pattern=r"^CVE-\d{4}-\d{4,7}$")]
Sha256 = Annotated[str, msgspec.Meta(pattern=r"^[A-Fa-f0-9]{64}$")]
Domain = Annotated[str, msgspec.Meta(pattern=r"^(?=.{1,253}$)[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?$")]
Note = Annotated[str, msgspec.Meta(max_length=2000)]


def _ip(field: str, value: str | None) -> str | None:
    if value is None:
        return None
    normalised = _normalised_ip(value)
    if normalised is None:
        raise ValueError(f"{field}: {value!r} is not an IPv4 or IPv6 address")
    return normalised


@lru_cache(maxsize=65_536)
def _normalised_ip(value: str) -> str | None:
    # the same addresses recur in alert after alert: parse each once; a canonical IPv4
    # address (the usual case) is checked by the C library, anything else by ipaddress
    with contextlib.suppress(OSError):
        if socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, value)) == value:
            return value
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


class Process(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    name: ShortName
    command_line: Annotated[str, msgspec.Meta(max_length=4096)] = ""
    pid: Annotated[int, msgspec.Meta(ge=0)] | None = None
    parent: Annotated[str, msgspec.Meta(max_length=128)] = ""
    sha256: Sha256 | None = None


class Alert(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """One security alert as producers send it (docs/soc.md maps ECS and OCSF onto it)."""

    id: AlertId = msgspec.field(default_factory=new_id)
    time: datetime = msgspec.field(default_factory=utcnow)
    source: ShortName  # the detecting product: crowdstrike, suricata, okta, ...
    title: Name  # the rule name
    severity: Severity
    rule_id: Annotated[str, msgspec.Meta(max_length=128)] = ""
    description: Annotated[str, msgspec.Meta(max_length=4096)] = ""
    host: Annotated[str, msgspec.Meta(max_length=255)] = ""
    user: Annotated[str, msgspec.Meta(max_length=255)] = ""
    src_ip: str | None = None
    dst_ip: str | None = None
    domain: Domain | None = None
    process: Process | None = None
    techniques: Annotated[list[Technique], msgspec.Meta(max_length=20)] = []
    cves: Annotated[list[Cve], msgspec.Meta(max_length=20)] = []
    count: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 1  # events folded into this alert
    raw: dict[str, Any] = {}

    def __post_init__(self) -> None:
        # msgspec reports these with the path of the alert; the message names the field
        self.src_ip = _ip("src_ip", self.src_ip)
        self.dst_ip = _ip("dst_ip", self.dst_ip)
        if self.time.tzinfo is None:
            self.time = self.time.replace(tzinfo=UTC)
        if self.raw and len(msgspec.json.encode(self.raw)) > MAX_RAW_BYTES:
            raise ValueError(f"raw: the original event is larger than {MAX_RAW_BYTES} bytes")


class AlertSummary(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The alert without its `raw` original, as carried in decision events."""

    id: str
    time: datetime
    source: str
    title: str
    severity: str
    rule_id: str = ""
    host: str = ""
    user: str = ""
    src_ip: str | None = None
    dst_ip: str | None = None
    domain: str | None = None
    process: Process | None = None
    techniques: list[str] = []
    cves: list[str] = []
    count: int = 1

    def as_alert(self) -> Alert:
        return msgspec.convert(msgspec.to_builtins(self), Alert)


def summarize(alert: Alert) -> AlertSummary:
    fields = msgspec.structs.asdict(alert)
    fields.pop("raw")
    fields.pop("description")
    return AlertSummary(**fields)


# --- intake --------------------------------------------------------------------------


class IntakeReply(msgspec.Struct, kw_only=True, omit_defaults=True):
    ok: bool
    accepted: int = 0
    ids: list[str] = []
    error: str | None = None  # invalid_alert | invalid_feedback | unknown_alert | too_many | unavailable
    message: str = ""
    field: str | None = None  # the JSON path of the offending field, e.g. $[3].src_ip


class AlertDecodeError(ValueError):
    def __init__(self, message: str, field: str | None) -> None:
        super().__init__(message)
        self.field = field


_alerts_decoder = msgspec.json.Decoder(Alert | list[Alert])


def decode_alerts(body: bytes, *, max_batch: int = MAX_BATCH) -> list[Alert]:
    """One alert or a JSON array of alerts, strictly validated. Raises AlertDecodeError
    whose message and ``field`` name the first problem (``$[3].src_ip``)."""
    if not body.strip():
        raise AlertDecodeError("empty body: expected an alert object or an array of alerts", None)
    try:
        decoded = _alerts_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise AlertDecodeError(f"invalid alert: {exc}", error_path(str(exc))) from None
    except msgspec.DecodeError as exc:
        raise AlertDecodeError(f"malformed JSON: {exc}", None) from None
    alerts = decoded if isinstance(decoded, list) else [decoded]
    if not alerts:
        raise AlertDecodeError("empty batch: expected at least one alert", "$")
    if len(alerts) > max_batch:
        raise AlertDecodeError(f"too many alerts in one batch: {len(alerts)} > {max_batch}", "$")
    return alerts


def error_path(message: str) -> str | None:
    """`Expected int - at `$[2].count`` -> `$[2].count`; a __post_init__ error names its
    field first (`src_ip: ... - at `$[0]``) -> `$[0].src_ip`; unknown fields too."""
    path = message.rsplit(" - at `", 1)[1].rstrip("`") if " - at `" in message else "$"
    head = message.split(" - at `", 1)[0]
    if "unknown field `" in head:
        return f"{path}.{head.split('unknown field `', 1)[1].split('`', 1)[0]}"
    prefix = head.split(":", 1)[0]
    if prefix.isidentifier() and prefix in Alert.__struct_fields__:
        return f"{path}.{prefix}"
    return path


# --- feedback ------------------------------------------------------------------------


class FeedbackSubmission(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What an analyst (or a raw producer) sends. `alert` lets a producer label an alert
    the SOC has not decided (e.g. an import of historic cases)."""

    alert_id: AlertId
    verdict: Verdict
    analyst: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] = "anonymous"
    note: Note = ""
    alert: Alert | None = None


class AnalystFeedback(msgspec.Struct, kw_only=True):
    """A verdict on one alert, enriched with the alert: a labelled training sample."""

    id: str
    alert_id: str
    verdict: str
    analyst: str
    note: str
    time: datetime
    alert: AlertSummary
    decision: str | None = None  # what triage had decided, when it had

    @property
    def is_threat(self) -> bool:
        return self.verdict == "true_positive"


def new_feedback(
    alert: AlertSummary, verdict: str, analyst: str, note: str = "", decision: str | None = None
) -> AnalystFeedback:
    return AnalystFeedback(
        id=new_id(),
        alert_id=alert.id,
        verdict=verdict,
        analyst=analyst,
        note=note,
        time=utcnow(),
        alert=alert,
        decision=decision,
    )


feedback_decoder = msgspec.json.Decoder(AnalystFeedback)
submission_decoder = msgspec.json.Decoder(FeedbackSubmission)

# --- decisions and other SOC events ----------------------------------------------------


class Scores(msgspec.Struct, kw_only=True, array_like=False):
    true_positive: float  # AlertClassifier probability, 0..1
    anomaly: float  # AnomalyDetector, 0 (typical) .. 1 (unlike anything seen)
    threat: float  # ThreatScorer, 0..100


class Decision(msgspec.Struct, kw_only=True, omit_defaults=True):
    alert: AlertSummary
    decision: str  # auto_resolve | escalate | contain
    scores: Scores
    reasons: list[str]
    model_version: str
    decided_at: datetime
    sla_due: datetime | None = None  # escalations: when a human takes over


class Totals(msgspec.Struct, kw_only=True):
    """Cumulative SOC counters, carried by every SOC domain event so a restarted
    engine resumes them from its last event."""

    alerts_processed: int = 0
    auto_resolved: int = 0
    escalated: int = 0
    contained: int = 0
    escalated_to_human: int = 0
    playbooks_run: int = 0
    duplicates: int = 0  # redelivered or re-sent alerts recognised and skipped


class AlertsTriaged(msgspec.Struct, kw_only=True):
    """One or more triage decisions. Auto-resolutions of one batch share an event;
    every escalation and containment is its own event (its own activity-log row)."""

    TYPE: ClassVar[str] = "alerts_triaged"
    batch_id: str
    decisions: list[Decision]
    totals: Totals


class EscalatedToHuman(msgspec.Struct, kw_only=True):
    TYPE: ClassVar[str] = "escalated_to_human"
    alert_id: str
    title: str
    severity: str
    escalated_at: datetime
    sla_due: datetime
    overdue_seconds: float
    totals: Totals


class PlaybookExecuted(msgspec.Struct, kw_only=True):
    TYPE: ClassVar[str] = "playbook_executed"
    alert_id: str
    playbook: str
    trigger: str  # contain_decision | analyst_confirmed
    result: str  # rule_generated | actions_recorded | failed
    actions: list[dict[str, Any]]
    totals: Totals


class AlertRejected(msgspec.Struct, kw_only=True):
    """An alert or feedback message refused at intake or at triage (audit)."""

    TYPE: ClassVar[str] = "alert_rejected"
    subject: str
    error: str
    message: str
    field: str | None = None
    body_excerpt: str = ""


class HuntFinding(msgspec.Struct, kw_only=True):
    alert_id: str
    advisory_id: str
    advisory_title: str
    priority: str
    ioc_type: str
    ioc_value: str
    matched_field: str


class ThreatHuntCompleted(msgspec.Struct, kw_only=True):
    TYPE: ClassVar[str] = "threat_hunt_completed"
    alerts_searched: int
    advisories: int
    iocs: int
    findings: list[HuntFinding]  # only the ones not reported before


class ModelsReloaded(msgspec.Struct, kw_only=True):
    TYPE: ClassVar[str] = "models_reloaded"
    version: str
    previous: str | None
    ok: bool
    error: str | None = None


SOC_PAYLOAD_TYPES: dict[str, type[msgspec.Struct]] = {
    cls.TYPE: cls
    for cls in (
        AlertsTriaged,
        EscalatedToHuman,
        PlaybookExecuted,
        AlertRejected,
        ThreatHuntCompleted,
        ModelsReloaded,
    )
}


# --- streams -------------------------------------------------------------------------


def alerts_stream(settings: Settings) -> StreamConfig:
    # Work queue: a message is gone once triage acks it; the decision event is the record.
    return StreamConfig(
        name=ALERTS_STREAM,
        description="SOC alerts waiting for triage (work queue; validated alerts only)",
        subjects=[ALERT_QUEUE],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        max_age=7 * DAY,
        discard=DiscardPolicy.NEW,  # refuse new alerts rather than silently drop queued ones
        duplicate_window=settings.duplicate_window_s,
        num_replicas=settings.stream_replicas,
    )


def feedback_stream(settings: Settings) -> StreamConfig:
    return StreamConfig(
        name=FEEDBACK_STREAM,
        description="Analyst verdicts on SOC alerts: the labelled training set",
        subjects=[FEEDBACK_QUEUE],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=365 * DAY,
        discard=DiscardPolicy.OLD,
        duplicate_window=settings.duplicate_window_s,
        num_replicas=settings.stream_replicas,
    )


async def ensure_soc_streams(js: JetStreamContext, settings: Settings) -> None:
    await ensure_stream(js, alerts_stream(settings))
    await ensure_stream(js, feedback_stream(settings))


MAX_QUEUE_MESSAGE_BYTES = 256 * 1024  # well under the server's 1 MB max_payload


def alert_batch_msg_id(ids: list[str]) -> str:
    """Nats-Msg-Id of one queue message: a retried publish of the same batch is stored once."""
    if len(ids) == 1:
        return f"alert-{ids[0]}"
    return "alerts-" + hashlib.sha256("\n".join(ids).encode()).hexdigest()[:32]


def encode_alerts(alerts: list[Alert]) -> bytes:
    return msgspec.json.encode(alerts[0] if len(alerts) == 1 else alerts)


def queue_messages(alerts: list[Alert]) -> list[tuple[str, bytes]]:
    """(Nats-Msg-Id, body) of the queue messages carrying ``alerts``: as few as fit under
    ``MAX_QUEUE_MESSAGE_BYTES`` each. Fewer, larger messages are what makes the queue
    fast on a server that fsyncs every write (docs/soc.md)."""
    messages: list[tuple[str, bytes]] = []
    parts: list[bytes] = []
    ids: list[str] = []
    size = 0
    for alert in alerts:
        encoded = msgspec.json.encode(alert)
        if parts and size + len(encoded) + 1 > MAX_QUEUE_MESSAGE_BYTES:
            messages.append(_queue_message(ids, parts))
            parts, ids, size = [], [], 0
        parts.append(encoded)
        ids.append(alert.id)
        size += len(encoded) + 1
    if parts:
        messages.append(_queue_message(ids, parts))
    return messages


def _queue_message(ids: list[str], parts: list[bytes]) -> tuple[str, bytes]:
    body = parts[0] if len(parts) == 1 else b"[" + b",".join(parts) + b"]"
    return alert_batch_msg_id(ids), body
