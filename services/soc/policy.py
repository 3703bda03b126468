"""The triage decision policy: three model scores + the alert -> auto_resolve, escalate
or contain, with the reasons a human can read. Pure; documented in docs/soc.md.

- contain: the classifier is confident it is real (p ≥ contain_probability) AND the
  threat score is high (≥ contain_threat). A confirmed threat: SOAR runs its playbook.
- auto_resolve: the classifier is confident it is noise (p ≤ resolve_probability), the
  threat score is low (< resolve_threat) AND the anomaly detector has seen its like
  (anomaly < anomaly_guard). A critical alert needs p ≤ critical_resolve_probability.
- escalate: everything else — a human looks within the severity's SLA.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

AUTO_RESOLVE, ESCALATE, CONTAIN = "auto_resolve", "escalate", "contain"

DEFAULT_SLA_SECONDS = {
    "critical": 15 * 60,
    "high": 60 * 60,
    "medium": 4 * 3600,
    "low": 24 * 3600,
    "informational": 24 * 3600,
}


@dataclass(frozen=True)
class Thresholds:
    contain_probability: float = 0.85
    contain_threat: float = 70.0
    resolve_probability: float = 0.2
    critical_resolve_probability: float = 0.05
    resolve_threat: float = 30.0
    anomaly_guard: float = 0.8
    sla_seconds: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SLA_SECONDS))


def decide(
    severity: str, true_positive: float, anomaly: float, threat: float, t: Thresholds
) -> tuple[str, list[str]]:
    reasons = [
        f"classifier: {true_positive:.0%} likely a true positive",
        f"threat score {threat:.0f}/100",
        f"anomaly {anomaly:.2f} ({'unusual' if anomaly >= t.anomaly_guard else 'seen before'})",
    ]
    if true_positive >= t.contain_probability and threat >= t.contain_threat:
        reasons.append(
            f"confirmed threat: p ≥ {t.contain_probability:.0%} and threat ≥ {t.contain_threat:.0f} — contain"
        )
        return CONTAIN, reasons
    resolve_p = t.critical_resolve_probability if severity == "critical" else t.resolve_probability
    blockers = []
    if true_positive > resolve_p:
        blockers.append(
            f"p {true_positive:.0%} > {resolve_p:.0%}" + (" (critical)" if severity == "critical" else "")
        )
    if threat >= t.resolve_threat:
        blockers.append(f"threat {threat:.0f} ≥ {t.resolve_threat:.0f}")
    if anomaly >= t.anomaly_guard:
        blockers.append(f"anomaly {anomaly:.2f} ≥ {t.anomaly_guard:.2f}")
    if not blockers:
        reasons.append("benign with confidence — auto-resolved")
        return AUTO_RESOLVE, reasons
    reasons.append("needs an analyst: " + "; ".join(blockers))
    return ESCALATE, reasons


def sla_due(severity: str, decided_at: datetime, t: Thresholds) -> datetime:
    seconds = t.sla_seconds.get(severity, DEFAULT_SLA_SECONDS.get(severity, 3600))
    return decided_at + timedelta(seconds=seconds)
