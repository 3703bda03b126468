"""What the SOC remembers, as a pure fold over its own events and the analysts'
verdicts. The engine applies an event right after the stream has stored it, and at
start-up replays the same events through the same ``apply`` — one code path, so a
restarted engine knows exactly what it had decided (and never decides an alert twice).
Every instance triages from the shared queue and follows the others' events through the
same ``apply``: each knows every decision, and the counters of every instance.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from contracts.soc import (
    AlertsTriaged,
    AlertSummary,
    AnalystFeedback,
    Decision,
    EscalatedToHuman,
    PlaybookExecuted,
    Scores,
    ThreatHuntCompleted,
    Totals,
    counts_of,
    max_totals,
    merge_counts,
    sum_counts,
)
from services.soc.policy import AUTO_RESOLVE, CONTAIN, ESCALATE


@dataclass(slots=True)
class AlertRecord:
    alert: AlertSummary
    decision: str
    scores: Scores
    decided_at: datetime
    model_version: str
    feedback: str | None = None
    escalated_to_human: bool = False
    playbook: str | None = None


@dataclass(slots=True)
class OpenEscalation:
    alert_id: str
    title: str
    severity: str
    escalated_at: datetime
    sla_due: datetime


class SocState:
    def __init__(self, max_alerts: int = 200_000, recent: int = 50, *, instance: str = "") -> None:
        self.max_alerts = max_alerts
        self.instance = instance  # whose share ``counted`` adds to
        self.alerts: OrderedDict[str, AlertRecord] = OrderedDict()
        self.open_escalations: dict[str, OpenEscalation] = {}
        self.confirmed: OrderedDict[str, str] = OrderedDict()  # alert id -> why, awaiting a playbook
        self.reported_findings: set[tuple[str, str, str]] = set()
        self.counts: dict[str, Totals] = {}  # the latest counters of every instance
        self.recent_decisions: deque[Decision] = deque(maxlen=recent)

    # --- folding events -----------------------------------------------------------------

    def apply(self, payload: msgspec.Struct) -> None:
        if isinstance(payload, AlertsTriaged):
            for decision in payload.decisions:
                self._decided(decision)
        elif isinstance(payload, EscalatedToHuman):
            record = self.alerts.get(payload.alert_id)
            if record is not None:
                record.escalated_to_human = True
            self.open_escalations.pop(payload.alert_id, None)
        elif isinstance(payload, PlaybookExecuted):
            record = self.alerts.get(payload.alert_id)
            if record is not None:
                record.playbook = payload.playbook
            self.confirmed.pop(payload.alert_id, None)
        elif isinstance(payload, ThreatHuntCompleted):
            for finding in payload.findings:
                self.reported_findings.add((finding.alert_id, finding.advisory_id, finding.ioc_value))
        self.apply_counts(payload)

    def apply_counts(self, payload: msgspec.Struct) -> None:
        """Only the counters of an event (at start: the newest event of each kind, which
        may be older than the replayed window)."""
        counts = counts_of(payload)
        if counts is not None:
            merge_counts(self.counts, counts)

    # --- counting -------------------------------------------------------------------------

    @property
    def totals(self) -> Totals:
        """The SOC's counters: every instance's share, summed."""
        return sum_counts(self.counts)

    @property
    def own(self) -> Totals:
        return self.counts.get(self.instance, Totals())

    def counted(self, own: Totals) -> dict[str, Totals]:
        """The counters to carry in an event whose writer's share is now ``own``."""
        return {**self.counts, self.instance: own}

    def count_locally(self, own: Totals) -> None:
        """A count no event carries yet (duplicates skipped): the next event will."""
        self.counts[self.instance] = max_totals(self.own, own)

    def _decided(self, decision: Decision) -> None:
        alert = decision.alert
        self.alerts[alert.id] = AlertRecord(
            alert, decision.decision, decision.scores, decision.decided_at, decision.model_version
        )
        self.alerts.move_to_end(alert.id)
        if decision.decision == ESCALATE and decision.sla_due is not None:
            self.open_escalations[alert.id] = OpenEscalation(
                alert.id, alert.title, alert.severity, decision.decided_at, decision.sla_due
            )
        elif decision.decision == CONTAIN:
            self.confirmed[alert.id] = "contain_decision"
        self.recent_decisions.append(decision)  # rendered only when someone asks (detail)
        while len(self.alerts) > self.max_alerts:
            self.alerts.popitem(last=False)

    def apply_feedback(self, verdict: AnalystFeedback) -> None:
        """An analyst looked: the escalation is answered. A confirmed attack that no
        playbook has handled yet (escalated, or even auto-resolved) goes to SOAR."""
        self.open_escalations.pop(verdict.alert_id, None)
        record = self.alerts.get(verdict.alert_id)
        if record is None:
            return
        record.feedback = verdict.verdict
        if verdict.is_threat and record.playbook is None and verdict.alert_id not in self.confirmed:
            self.confirmed[verdict.alert_id] = "analyst_confirmed"

    # --- questions ------------------------------------------------------------------------

    def knows(self, alert_id: str) -> bool:
        return alert_id in self.alerts

    def overdue(self, now: datetime) -> list[OpenEscalation]:
        return sorted(
            (e for e in self.open_escalations.values() if e.sla_due <= now), key=lambda e: e.sla_due
        )

    def recent_alerts(self, since: datetime) -> Iterator[AlertSummary]:
        for record in reversed(self.alerts.values()):
            if record.decided_at < since:
                break
            yield record.alert

    def recent(self) -> list[dict[str, Any]]:
        """The latest decisions, newest first."""
        return [
            {
                "alert_id": d.alert.id,
                "title": d.alert.title,
                "severity": d.alert.severity,
                "host": d.alert.host,
                "decision": d.decision,
                "scores": msgspec.to_builtins(d.scores),
                "reasons": d.reasons,
                "model_version": d.model_version,
                "decided_at": d.decided_at.isoformat(),
            }
            for d in reversed(self.recent_decisions)
        ]

    def stats(self) -> dict[str, Any]:
        totals = msgspec.to_builtins(self.totals)
        processed = self.totals.alerts_processed
        return {
            **totals,
            "auto_resolve_rate_pct": round(100 * self.totals.auto_resolved / processed, 2)
            if processed
            else 0.0,
            "open_escalations": len(self.open_escalations),
            "awaiting_playbook": len(self.confirmed),
            "alerts_in_memory": len(self.alerts),
        }


__all__ = ["AUTO_RESOLVE", "CONTAIN", "ESCALATE", "AlertRecord", "OpenEscalation", "SocState"]
