"""Events and heartbeats built the way engines build them, for the gateway's tests: a
seeded mix of every kind the read models fold (cycles, commands, lifecycle changes
with lease epochs, SOC decisions, hand-overs, playbooks, hunts, ML evaluations,
annotations), published to a real server or applied to a view directly."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import msgspec

from contracts import ml, soc, subjects
from contracts.events import (
    CommandHandled,
    CycleCompleted,
    EntryAnnotated,
    Envelope,
    Heartbeat,
    LifecycleChanged,
    ProcessMetrics,
    StatusSnapshot,
    Summary,
    encode,
    new_event,
)
from contracts.systems import SYSTEMS
from gateway.readmodels.base import decode_feed_event

SLUGS = list(SYSTEMS)
ACTORS = ["alice@soc", "bob@platform", "nats:anonymous", "cli:carol"]
WORDS = ["deploy", "redeploy", "escalated", "INC-4711", "queue", "p95", "rollback", "été", "naïve"]


def event(system: str, payload: msgspec.Struct, action: str, detail: str, **kw) -> Envelope:
    envelope = new_event(
        system=system,
        payload=payload,
        summary=Summary(action=action, detail=detail, result=kw.pop("result", "success")),
        actor=kw.pop("actor", system),
    )
    envelope.epoch = kw.pop("epoch", 0)
    envelope.instance = kw.pop("instance", "")
    if "time" in kw:
        envelope.time = kw.pop("time")
    return envelope


def lifecycle(system: str, state: str, *, epoch: int = 0, instance: str = "", actor: str = "") -> Envelope:
    previous = "running" if state == "stopped" else "stopped"
    payload = LifecycleChanged(state=state, previous=previous, desired=state, reason=f"{state} by test")
    return event(
        system,
        payload,
        f"engine_{state}",
        f"{system} {state}",
        epoch=epoch,
        instance=instance,
        actor=actor or system,
    )


def decision(rng: random.Random, n: int, when: datetime, seed: int = 0) -> soc.Decision:
    alert = soc.AlertSummary(
        id=f"alert-{seed}-{n}",
        time=when.astimezone(UTC if n % 2 else timezone(timedelta(hours=2))),  # offsets survive
        source=rng.choice(["crowdstrike", "suricata", "okta"]),
        title=rng.choice(["Brute force on VPN", "Suspicious PowerShell", "Impossible travel", "C2 beacon"]),
        severity=rng.choice(["low", "medium", "high", "critical"]),
        host=f"host-{rng.randint(1, 9)}",
        user=rng.choice(["alice", "bob", "", "svc-backup"]),
        src_ip=f"10.0.{rng.randint(0, 3)}.{rng.randint(1, 250)}",
        techniques=rng.sample(["T1110", "T1110.001", "T1059.001", "T1078"], k=rng.randint(0, 2)),
    )
    return soc.Decision(
        alert=alert,
        decision=rng.choice(["auto_resolve", "escalate", "contain"]),
        scores=soc.Scores(
            true_positive=rng.random(), anomaly=rng.random(), threat=round(rng.uniform(0, 100), 2)
        ),
        reasons=["score"],
        model_version=rng.choice(["v1", "v2"]),
        decided_at=when,
    )


def mixed_events(count: int, *, seed: int = 3, start: datetime | None = None) -> list[tuple[str, Envelope]]:
    """(subject, envelope) pairs in stream order; times one second apart."""
    rng = random.Random(seed)
    now = start or datetime(2026, 11, 1, tzinfo=UTC)
    out: list[tuple[str, Envelope]] = []
    alerts = 0
    totals = soc.Totals()
    epochs = dict.fromkeys(SLUGS, 1)
    for n in range(count):
        when = now + timedelta(seconds=n)
        roll = rng.random()
        system = rng.choice(SLUGS)
        word = rng.choice(WORDS)
        if roll < 0.4:
            ok = rng.random() > 0.1
            payload = CycleCompleted(
                loop="scan",
                run_id=f"r{n}",
                ok=ok,
                result="success" if ok else "failed",
                detail="",
                duration_ms=3,
            )
            envelope = event(
                system, payload, "scan_cycle", f"scan: {word} {n % 17} items", result=payload.result
            )
        elif roll < 0.55:
            verb = rng.choice(["stop", "start", "trigger"])
            payload = CommandHandled(
                command_id=f"c{n}", verb=verb, target=system, origin="http", outcome="accepted", message="ok"
            )
            actor = rng.choice(ACTORS)
            envelope = event(
                system, payload, f"command_{verb}", f"{verb} from http (reason: {word})", actor=actor
            )
        elif roll < 0.65:
            if rng.random() < 0.3:
                epochs[system] += 1  # a failover: the next instance writes at a higher epoch
            deposed = rng.random() < 0.15
            epoch = epochs[system] - 1 if deposed and epochs[system] > 1 else epochs[system]
            envelope = lifecycle(
                system, rng.choice(["running", "stopped"]), epoch=epoch, instance=f"{system}-{epoch}"
            )
        elif roll < 0.85:
            decisions = [decision(rng, alerts + i, when, seed) for i in range(rng.randint(1, 3))]
            alerts += len(decisions)
            totals = soc.Totals(alerts_processed=totals.alerts_processed + len(decisions))
            payload = soc.AlertsTriaged(batch_id=f"b{n}", decisions=decisions, totals=totals)
            envelope = event("soc-cycle", payload, "alerts_triaged", f"{len(decisions)} alerts {word}")
        elif roll < 0.9 and alerts:
            target = f"alert-{seed}-{rng.randrange(alerts)}"
            payload = soc.PlaybookExecuted(
                alert_id=target,
                playbook="block",
                trigger="contain_decision",
                result="rule_generated",
                actions=[{"kind": "block", "ip": "10.0.0.1"}],
                totals=totals,
            )
            envelope = event("soc-cycle", payload, "playbook_executed", f"block for {target}")
        elif roll < 0.93 and alerts:
            target = f"alert-{seed}-{rng.randrange(alerts)}"
            payload = soc.EscalatedToHuman(
                alert_id=target,
                title="t",
                severity="high",
                escalated_at=when,
                sla_due=when,
                overdue_seconds=1.0,
                totals=totals,
            )
            envelope = event("soc-cycle", payload, "escalated_to_human", f"{target} to a human")
        elif roll < 0.96:
            payload = ml.ModelEvaluated(
                run_id=f"m{n}",
                version=f"v{n}",
                reason="manual",
                promoted=True,
                verdict=["ok"],
                candidate={"f1": 0.8},
                active=None,
                active_version=None,
                training_samples=10,
                feedback_samples=1,
                buffered=1,
                feedback_through_seq=0,
                total_retrains=1,
                evaluated_at=when,
                duration_s=1.0,
            )
            envelope = event("ml-retrain", payload, "model_evaluated", f"v{n} evaluated")
        else:
            envelope = event(
                system,
                CycleCompleted(loop="x", run_id="x", ok=True, result="noop", detail="", duration_ms=1),
                "quiet_cycle",
                "nothing to do — été naïve",
                result="noop",
            )
        envelope.time = when
        out.append((subjects.evt(envelope.system, envelope.type), envelope))
    return out


def annotation(target: Envelope, seq: int, tags: list[str], comment: str = "") -> tuple[str, Envelope]:
    payload = EntryAnnotated(
        entry_id=target.id, entry_seq=seq, entry_system=target.system, tags=tags, comment=comment
    )
    envelope = event(
        "gateway", payload, "entry_annotated", f"annotated {target.system} #{seq}", actor="admin"
    )
    return subjects.evt("gateway", envelope.type), envelope


def feed(view, envelopes: list[Envelope], first_seq: int = 1) -> None:
    """Apply envelopes to a view as the feed would (seq = position in the list + first_seq)."""
    for seq, envelope in enumerate(envelopes, first_seq):
        data = encode(envelope)
        decoded = decode_feed_event(data)
        if view.wants(decoded.system, decoded.type):
            view.apply(seq, decoded, data)


def heartbeat(
    system: str,
    *,
    instance: str,
    role: str = "active",
    epoch: int = 0,
    seq: int = 1,
    boot_id: str = "",
    pid: int = 4242,
    state: str = "running",
) -> Heartbeat:
    now = datetime.now(UTC)
    return Heartbeat(
        system=system,
        boot_id=boot_id or f"boot-{instance}",
        seq=seq,
        time=now,
        status=StatusSnapshot(
            state=state,
            desired=state,
            running=state == "running",
            last_run=None,
            error_count=0,
            success_rate=100.0,
            total_runs=seq,
            role=role,
            instance=instance,
        ),
        process=ProcessMetrics(
            pid=pid, rss_mb=10.0, memory_percent=0.1, cpu_percent=1.0, threads=3, uptime_seconds=5
        ),
        interval_s=0.2,
        instance=instance,
        role=role,
        epoch=epoch,
        host="test-host",
        started=now - timedelta(seconds=5),
    )


def heartbeat_subject(beat: Heartbeat) -> str:
    return subjects.hb(beat.system, None if beat.role == "active" else beat.instance)


def factory_events(count: int) -> list[tuple[str, Envelope]]:
    """Requirements submitted, generated or failed, and cancelled, as the factory writes them."""
    from contracts.factory import (
        FACTORY,
        RequirementCancelled,
        RequirementFailed,
        RequirementGenerating,
        RequirementSubmission,
        RequirementSubmitted,
    )

    out = []
    for n in range(count):
        rid = f"req-{n}"
        submission = RequirementSubmission(title=f"Page {n}", page_type="data_table", route=f"/pages/p{n}")
        steps = [
            (RequirementSubmitted(requirement_id=rid, submission=submission), "requirement_submitted"),
            (
                RequirementGenerating(requirement_id=rid, attempt=1, template="data_table"),
                "requirement_generating",
            ),
        ]
        if n % 3 == 0:
            steps.append(
                (RequirementFailed(requirement_id=rid, stage="generate", error="boom"), "requirement_failed")
            )
        if n % 4 == 0:
            steps.append(
                (RequirementCancelled(requirement_id=rid, previous_status="failed"), "requirement_cancelled")
            )
        for payload, action in steps:
            envelope = event(FACTORY, payload, action, f"{action} {rid}")
            out.append((subjects.evt(FACTORY, envelope.type), envelope))
    return out
