"""The SOC's events (on ``aoc.evt.soc-cycle.<type>``): triage decisions and everything
the engine did about them. Each payload's ``TYPE`` is its event type."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import msgspec

from contracts.soc.alerts import AlertSummary, RejectedRecord
from contracts.soc.playbooks import PlaybooksLoaded


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
    engine resumes them from its last event. Every SOC instance triages (one shared work
    queue), so each counts its own share: ``by_instance`` of an event holds the latest
    counters of every instance its writer knew, and the SOC's totals are their sum."""

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
    by_instance: dict[str, Totals] = {}  # absent before shared triage: see counts_of


class EscalatedToHuman(msgspec.Struct, kw_only=True):
    TYPE: ClassVar[str] = "escalated_to_human"
    alert_id: str
    title: str
    severity: str
    escalated_at: datetime
    sla_due: datetime
    overdue_seconds: float
    totals: Totals
    by_instance: dict[str, Totals] = {}  # absent before shared triage: see counts_of


class PlaybookExecuted(msgspec.Struct, kw_only=True):
    TYPE: ClassVar[str] = "playbook_executed"
    alert_id: str
    playbook: str
    trigger: str  # contain_decision | analyst_confirmed
    result: str  # rule_generated | actions_recorded | failed
    actions: list[dict[str, Any]]
    totals: Totals
    by_instance: dict[str, Totals] = {}  # absent before shared triage: see counts_of


LEGACY_INSTANCE = ""  # the counters of events written before every instance triaged


def counts_of(payload: Any) -> dict[str, Totals] | None:
    """The per-instance counters an event carries (an event from before shared triage:
    its ``totals`` were the one writer's, kept under ``LEGACY_INSTANCE``)."""
    totals = getattr(payload, "totals", None)
    if totals is None:
        return None
    return getattr(payload, "by_instance", None) or {LEGACY_INSTANCE: totals}


def merge_counts(into: dict[str, Totals], other: dict[str, Totals]) -> None:
    """Fold ``other`` into ``into``: per instance, counters only grow, so the element-wise
    max is the later of two snapshots even when events reached the stream out of order."""
    for instance, totals in other.items():
        known = into.get(instance)
        into[instance] = totals if known is None else max_totals(known, totals)


def max_totals(a: Totals, b: Totals) -> Totals:
    return Totals(**{name: max(getattr(a, name), getattr(b, name)) for name in Totals.__struct_fields__})


def sum_counts(counts: dict[str, Totals]) -> Totals:
    """The SOC's totals: the sum of every instance's share."""
    return Totals(
        **{name: sum(getattr(t, name) for t in counts.values()) for name in Totals.__struct_fields__}
    )


MAX_AUDITED_RECORDS = 20  # refused records listed in one alert_rejected event (all are counted)


class AlertRejected(msgspec.Struct, kw_only=True):
    """An alert or feedback message refused at intake or at triage (audit). For a batch in
    a product format: the records refused (the first ``MAX_AUDITED_RECORDS``, each reason
    bounded) and how many there were, while the good records of the batch were queued."""

    TYPE: ClassVar[str] = "alert_rejected"
    subject: str  # a NATS subject, or the HTTP route (POST /api/v1/soc/alerts, a webhook)
    error: str
    message: str
    field: str | None = None
    body_excerpt: str = ""
    format: str | None = None
    records: list[RejectedRecord] = []
    rejected_count: int = 0
    accepted: int = 0  # good records of the same batch that were queued


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
        PlaybooksLoaded,
    )
}
