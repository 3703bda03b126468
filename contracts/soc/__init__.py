"""The SOC contract: alerts in (AOC's own shape or a product's), analyst feedback in,
triage decisions out.

- subjects.py — subjects, streams, consumers, buckets (what travels where);
- alerts.py — ``Alert`` (strict) and ``AlertSummary``, ``decode_alerts``, ``IntakeReply``;
- formats/ — Suricata EVE, Wazuh, Elastic Security (ECS) and OCSF Detection Finding
  records mapped onto ``Alert`` (docs/soc.md has the table), and format detection;
- intake.py — one body (JSON object, array or NDJSON) in any format -> accepted alerts
  and rejected records with their index and reason;
- feedback.py — analyst verdicts; events.py — the SOC's event payloads;
- playbooks.py — the SOAR playbook types (the SOC loads the YAML files);
- webhooks.py — webhook sources, their HMAC signatures and delivery ids;
- streams.py — stream definitions and the packing of alerts into queue messages.

Everything is importable from ``contracts.soc``.
"""

from __future__ import annotations

from contracts.soc.alerts import (
    MAX_BATCH,
    MAX_RAW_BYTES,
    SEVERITIES,
    Alert,
    AlertDecodeError,
    AlertId,
    AlertSummary,
    Cve,
    DecisionKind,
    Domain,
    IntakeReply,
    Name,
    Note,
    Process,
    RejectedRecord,
    Severity,
    Sha256,
    ShortName,
    Technique,
    Verdict,
    decode_alerts,
    error_path,
    summarize,
)
from contracts.soc.events import (
    LEGACY_INSTANCE,
    MAX_AUDITED_RECORDS,
    SOC_PAYLOAD_TYPES,
    AlertRejected,
    AlertsTriaged,
    Decision,
    EscalatedToHuman,
    HuntFinding,
    ModelsReloaded,
    PlaybookExecuted,
    Scores,
    ThreatHuntCompleted,
    Totals,
    counts_of,
    max_totals,
    merge_counts,
    sum_counts,
)
from contracts.soc.feedback import (
    AnalystFeedback,
    FeedbackSubmission,
    feedback_decoder,
    new_feedback,
    submission_decoder,
)
from contracts.soc.intake import MAX_REASON, ParsedAlerts, parse_alerts, refusal_audit, rejection_audit
from contracts.soc.playbooks import Playbook, PlaybooksLoaded
from contracts.soc.streams import (
    MAX_QUEUE_MESSAGE_BYTES,
    alert_batch_msg_id,
    alerts_stream,
    encode_alerts,
    ensure_soc_streams,
    feedback_stream,
    queue_messages,
)
from contracts.soc.subjects import (
    ALERT_FORMAT_INTAKE,
    ALERT_INTAKE,
    ALERT_QUEUE,
    ALERTS_STREAM,
    FEEDBACK_INTAKE,
    FEEDBACK_QUEUE,
    FEEDBACK_STREAM,
    ML_FEEDBACK_CONSUMER,
    SOC_SYSTEM,
    TRIAGE_CONSUMER,
    WEBHOOK_DELIVERIES_BUCKET,
)

__all__ = [
    "ALERTS_STREAM",
    "ALERT_FORMAT_INTAKE",
    "ALERT_INTAKE",
    "ALERT_QUEUE",
    "FEEDBACK_INTAKE",
    "FEEDBACK_QUEUE",
    "FEEDBACK_STREAM",
    "LEGACY_INSTANCE",
    "MAX_AUDITED_RECORDS",
    "MAX_BATCH",
    "MAX_QUEUE_MESSAGE_BYTES",
    "MAX_RAW_BYTES",
    "MAX_REASON",
    "ML_FEEDBACK_CONSUMER",
    "SEVERITIES",
    "SOC_PAYLOAD_TYPES",
    "SOC_SYSTEM",
    "TRIAGE_CONSUMER",
    "WEBHOOK_DELIVERIES_BUCKET",
    "Alert",
    "AlertDecodeError",
    "AlertId",
    "AlertRejected",
    "AlertSummary",
    "AlertsTriaged",
    "AnalystFeedback",
    "Cve",
    "Decision",
    "DecisionKind",
    "Domain",
    "EscalatedToHuman",
    "FeedbackSubmission",
    "HuntFinding",
    "IntakeReply",
    "ModelsReloaded",
    "Name",
    "Note",
    "ParsedAlerts",
    "Playbook",
    "PlaybookExecuted",
    "PlaybooksLoaded",
    "Process",
    "RejectedRecord",
    "Scores",
    "Severity",
    "Sha256",
    "ShortName",
    "Technique",
    "ThreatHuntCompleted",
    "Totals",
    "Verdict",
    "alert_batch_msg_id",
    "alerts_stream",
    "counts_of",
    "decode_alerts",
    "encode_alerts",
    "ensure_soc_streams",
    "error_path",
    "feedback_decoder",
    "feedback_stream",
    "max_totals",
    "merge_counts",
    "new_feedback",
    "parse_alerts",
    "queue_messages",
    "refusal_audit",
    "rejection_audit",
    "submission_decoder",
    "sum_counts",
    "summarize",
]
