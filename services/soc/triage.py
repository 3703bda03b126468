"""Triage of one batch, apart from I/O: score every alert with the three models in one
call each, decide, and shape the decisions into events.

The decisions of a batch are published grouped by outcome — one ``alerts_triaged``
event for the auto-resolutions, one for the escalations, one for the containments (at
most ``DECISIONS_PER_EVENT`` each), every decision inside with its scores and reasons.
One stored event per decision would cap triage at the server's fsync rate (about 2,000
writes/s with ``sync_interval: always`` on this machine; docs/soc.md). What an analyst
acts on one alert at a time — a hand-over to a human, a playbook run — is its own event.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import msgspec

from contracts.events import Summary
from contracts.soc import Alert, AlertsTriaged, Decision, Scores, Totals, sum_counts, summarize
from services.shared.triage.bundle import ModelBundle, score
from services.shared.triage.features import extract_batch
from services.soc.policy import AUTO_RESOLVE, CONTAIN, ESCALATE, Thresholds, decide, sla_due

DECISIONS_PER_EVENT = 500
_COUNTER = {AUTO_RESOLVE: "auto_resolved", ESCALATE: "escalated", CONTAIN: "contained"}


@dataclass
class StagedEvent:
    """An event built, not yet stored (a decision group, a playbook run)."""

    payload: msgspec.Struct
    summary: Summary
    event_id: str  # deterministic: a re-published event is stored once (Nats-Msg-Id)


@dataclass
class TriageResult:
    events: list[StagedEvent] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def decided(self) -> int:
        return sum(self.counts.values())


def fresh_alerts(alerts: list[Alert], known) -> tuple[list[Alert], int]:
    """Alerts not decided before (``known(id)``) nor repeated within the batch."""
    seen: set[str] = set()
    fresh = []
    for alert in alerts:
        if alert.id in seen or known(alert.id):
            continue
        seen.add(alert.id)
        fresh.append(alert)
    return fresh, len(alerts) - len(fresh)


def decide_batch(
    alerts: list[Alert],
    bundle: ModelBundle,
    thresholds: Thresholds,
    counts: dict[str, Totals],
    instance: str,
    now: datetime,
) -> TriageResult:
    """Score and decide ``alerts`` (already de-duplicated). CPU-bound: the engine runs a
    large batch in a worker thread. ``counts`` are every instance's counters before this
    batch; the decisions count to ``instance``'s share."""
    result = TriageResult()
    if not alerts:
        return result
    scores = score(bundle, extract_batch(alerts))
    running = msgspec.structs.replace(counts.get(instance, Totals()))
    grouped: dict[str, list[Decision]] = {AUTO_RESOLVE: [], ESCALATE: [], CONTAIN: []}
    for i, alert in enumerate(alerts):
        p, anomaly, threat = (
            float(scores.true_positive[i]),
            float(scores.anomaly[i]),
            float(scores.threat[i]),
        )
        kind, reasons = decide(alert.severity, p, anomaly, threat, thresholds)
        grouped[kind].append(
            Decision(
                alert=summarize(alert),
                decision=kind,
                scores=Scores(true_positive=round(p, 4), anomaly=round(anomaly, 4), threat=round(threat, 2)),
                reasons=reasons,
                model_version=bundle.version,
                decided_at=now,
                sla_due=sla_due(alert.severity, now, thresholds) if kind == ESCALATE else None,
            )
        )
        result.counts[kind] += 1
    for kind in (CONTAIN, ESCALATE, AUTO_RESOLVE):  # the urgent ones reach the stream first
        decisions = grouped[kind]
        for start in range(0, len(decisions), DECISIONS_PER_EVENT):
            chunk = decisions[start : start + DECISIONS_PER_EVENT]
            # each event counts the decisions up to and including its own: stored in
            # order, a crash after any of them leaves counters the stream bears out
            running.alerts_processed += len(chunk)
            setattr(running, _COUNTER[kind], getattr(running, _COUNTER[kind]) + len(chunk))
            digest = hashlib.sha256("\n".join(d.alert.id for d in chunk).encode()).hexdigest()[:32]
            by_instance = {**counts, instance: msgspec.structs.replace(running)}
            result.events.append(
                StagedEvent(
                    AlertsTriaged(
                        batch_id=digest,
                        decisions=chunk,
                        totals=sum_counts(by_instance),
                        by_instance=by_instance,
                    ),
                    summary_of(kind, chunk, bundle.version),
                    event_id=f"decisions-{kind}-{digest}",
                )
            )
    return result


def _headline(decision: Decision) -> str:
    alert, scores = decision.alert, decision.scores
    where = alert.host or alert.src_ip or alert.user or "unknown asset"
    odds = f"p {scores.true_positive:.0%}, threat {scores.threat:.0f}"
    return f"[{alert.severity}] {alert.title!r} on {where} ({odds})"


def summary_of(kind: str, decisions: list[Decision], version: str) -> Summary:
    """One activity-log line for a group of decisions of one kind."""
    n = len(decisions)
    if kind == AUTO_RESOLVE:
        titles = Counter(d.alert.title for d in decisions).most_common(3)
        top = ", ".join(f"{title!r} x{count}" for title, count in titles)
        noun = "alert" if n == 1 else "alerts"
        return Summary(
            action="alerts_auto_resolved",
            detail=f"Auto-resolved {n} {noun} with model {version} ({top})",
            result="auto_resolved",
        )
    worst = max(decisions, key=lambda d: d.scores.threat)
    if kind == CONTAIN:
        head = (
            f"Contained {_headline(worst)}"
            if n == 1
            else f"Contained {n} confirmed threats, worst {_headline(worst)}"
        )
        return Summary(action="alerts_contained", detail=f"{head}: playbooks queued", result="contained")
    due = min(d.sla_due for d in decisions if d.sla_due is not None)
    head = (
        f"Escalated {_headline(worst)}" if n == 1 else f"Escalated {n} alerts, most urgent {_headline(worst)}"
    )
    return Summary(
        action="alerts_escalated",
        detail=f"{head}: an analyst is due by {due.strftime('%H:%M:%SZ')}",
        result="escalated",
    )
