"""Control-plane alert rules over the event stream (and heartbeats for liveness).

The engine is pure: it is fed events (with their stream sequence and the stream's
timestamp), heartbeats and clock ticks, and fills ``outbox`` with the ``alert_fired`` /
``alert_resolved`` envelopes to publish. The service does the I/O.

Deduplication: at most one open alert per (rule, target). An alert's event id is derived
from the rule, the target and what made it fire (the triggering event, or the last
heartbeat before the silence), and a resolution's id from the alert's. So after a
restart the service replays the stream, re-derives the same alerts, sees their events
already in the stream, and publishes nothing twice; an alert it had derived but not yet
published when it died goes out then. (Nats-Msg-Id dedup covers a retried publish.)

Time: events are judged by the stream's timestamp, heartbeats by theirs; ticks by the
wall clock. During the replay the clock is the replayed events' time, so windows
(crash loops, bursts) rebuild as they were.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import msgspec

from contracts.events import Envelope, Summary, command_of
from contracts.siem import SIEM, AlertFired, AlertResolved, AlertTransition, OpenAlert, RuleInfo
from contracts.systems import SYSTEMS
from services.siem import rules as r

RECENT = 50  # transitions kept for the dashboard
TARGET_MAX = 128


def alert_id(rule: str, target: str, key: str) -> str:
    return hashlib.sha256(f"alert_fired|{rule}|{target}|{key}".encode()).hexdigest()[:32]


def resolution_id(fired_id: str) -> str:
    return hashlib.sha256(f"alert_resolved|{fired_id}".encode()).hexdigest()[:32]


def _command(event: Envelope) -> dict[str, Any] | None:
    """The command audit an event carries (a command_handled event, or the lifecycle event
    a command's change wrote: one write per command), as a dict; None for other events."""
    try:
        audit = command_of(event)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return None if audit is None else msgspec.to_builtins(audit)


def _alert_event(
    event_id: str, payload: AlertFired | AlertResolved, at: datetime, detail: str, correlation_id: str = ""
) -> Envelope:
    """The SIEM's event for an alert that fired or resolved (summary result: fired/resolved)."""
    return Envelope(
        id=event_id,
        source=SIEM,
        type=payload.TYPE,
        system=SIEM,
        time=at,
        summary=Summary(
            action=f"alert_{payload.rule}"[:64],
            detail=detail[:500],
            result="fired" if isinstance(payload, AlertFired) else "resolved",
        ),
        actor="system",
        correlation_id=correlation_id,
        data=msgspec.Raw(msgspec.json.encode(payload)),
    )


def _data(event: Envelope) -> dict[str, Any]:
    try:
        value = msgspec.json.decode(event.data)
    except msgspec.DecodeError:
        return {}
    return value if isinstance(value, dict) else {}


@dataclass
class Open:
    alert: OpenAlert
    kind: str
    facts: dict[str, Any] = field(default_factory=dict)


class AlertEngine:
    def __init__(self, rules: list[Any]) -> None:
        self.rules = [rule for rule in rules if rule.enabled]
        self.info = {
            rule.name: RuleInfo(name=rule.name, kind=rule.kind, severity=rule.severity, enabled=rule.enabled)
            for rule in rules
        }
        self.open: dict[tuple[str, str], Open] = {}
        self.published_ids: set[str] = set()  # alert events already in the stream
        self.outbox: list[Envelope] = []
        self.recent: deque[AlertTransition] = deque(maxlen=RECENT)
        self.replaying = True
        self._deferred: list[Envelope] = []
        # shared facts the rules read
        self.lifecycle: dict[str, str] = {}  # system -> last settled state
        self.heartbeats: dict[str, datetime] = {}
        self._crashes: dict[tuple[str, str], deque[tuple[datetime, bool]]] = defaultdict(deque)
        self._crash_signals: dict[str, deque[tuple[datetime, bool]]] = defaultdict(deque)
        self._rejections: dict[tuple[str, str], deque[tuple[datetime, int]]] = defaultdict(deque)
        self._escalations: dict[str, deque[datetime]] = defaultdict(deque)
        self._last_tick: datetime | None = None

    # --- firing and resolving -------------------------------------------------------------

    def _fire(
        self,
        rule: Any,
        target: str,
        key: str,
        at: datetime,
        *,
        title: str,
        detail: str = "",
        trigger: Envelope | None = None,
        trigger_seq: int = 0,
        facts: dict[str, Any] | None = None,
    ) -> None:
        target = target[:TARGET_MAX]
        if (rule.name, target) in self.open:
            return
        event_id = alert_id(rule.name, target, key)
        payload = AlertFired(
            rule=rule.name,
            kind=rule.kind,
            target=target,
            severity=rule.severity,
            title=title[:200],
            detail=detail[:1000],
            fired_at=at,
            trigger_event_id=trigger.id if trigger else "",
            trigger_seq=trigger_seq,
            facts=facts or {},
        )
        envelope = _alert_event(
            event_id,
            payload,
            at,
            f"{target}: {title}",
            correlation_id=trigger.correlation_id if trigger else "",
        )
        self._opened(envelope, payload)
        self.info[rule.name].fired += 1
        self._emit(envelope)

    def _resolve(self, rule: Any, target: str, at: datetime, reason: str) -> None:
        current = self.open.get((rule.name, target))
        if current is None:
            return
        fired = current.alert
        payload = AlertResolved(
            rule=rule.name,
            kind=rule.kind,
            target=target,
            alert_id=fired.id,
            resolved_at=at,
            fired_at=fired.fired_at,
            duration_s=round(max(0.0, (at - fired.fired_at).total_seconds()), 3),
            reason=reason[:500],
        )
        envelope = _alert_event(resolution_id(fired.id), payload, at, f"{target}: {reason}")
        self._closed(envelope, payload)
        self._emit(envelope)

    def _emit(self, envelope: Envelope) -> None:
        if self.replaying:
            self._deferred.append(envelope)
        elif envelope.id not in self.published_ids:
            self.published_ids.add(envelope.id)
            self.outbox.append(envelope)

    def _opened(self, envelope: Envelope, payload: AlertFired) -> None:
        alert = OpenAlert(
            id=envelope.id,
            rule=payload.rule,
            kind=payload.kind,
            target=payload.target,
            severity=payload.severity,
            title=payload.title,
            detail=payload.detail,
            fired_at=payload.fired_at,
        )
        self.open[(payload.rule, payload.target)] = Open(alert, payload.kind, dict(payload.facts))
        self.recent.append(
            AlertTransition(
                id=envelope.id,
                type=AlertFired.TYPE,
                rule=payload.rule,
                target=payload.target,
                severity=payload.severity,
                title=payload.title,
                time=payload.fired_at,
            )
        )

    def _closed(self, envelope: Envelope, payload: AlertResolved) -> None:
        current = self.open.get((payload.rule, payload.target))
        if current is not None and current.alert.id == payload.alert_id:
            del self.open[(payload.rule, payload.target)]
        self.recent.append(
            AlertTransition(
                id=envelope.id,
                type=AlertResolved.TYPE,
                rule=payload.rule,
                target=payload.target,
                severity=current.alert.severity if current else "",
                title=payload.reason,
                time=payload.resolved_at,
            )
        )

    def finish_replay(self, now: datetime) -> None:
        """The stream has been read up to where it was at start: publish what was derived
        but is not in the stream, then judge the clock."""
        self.replaying = False
        deferred, self._deferred = self._deferred, []
        for envelope in deferred:
            if envelope.id not in self.published_ids:
                self.published_ids.add(envelope.id)
                self.outbox.append(envelope)
        self.tick(now)

    def take_outbox(self) -> list[Envelope]:
        out, self.outbox = self.outbox, []
        return out

    def open_alerts(self) -> list[OpenAlert]:
        return sorted((entry.alert for entry in self.open.values()), key=lambda alert: alert.fired_at)

    # --- inputs ---------------------------------------------------------------------------

    def on_event(self, seq: int, at: datetime, event: Envelope) -> None:
        if event.type in (AlertFired.TYPE, AlertResolved.TYPE):
            self._own_event(event)
            return
        if event.type == "lifecycle_changed":
            state = _data(event).get("state")
            if isinstance(state, str):
                self.lifecycle[event.system] = state
        for rule in self.rules:
            handler = getattr(self, f"_on_{rule.kind.replace('-', '_')}", None)
            if handler is not None:
                handler(rule, seq, at, event)
        if self._last_tick is None or at - self._last_tick >= timedelta(seconds=1):
            self.tick(at)

    def _own_event(self, event: Envelope) -> None:
        self.published_ids.add(event.id)
        try:
            if event.type == AlertFired.TYPE:
                payload = msgspec.json.decode(event.data, type=AlertFired)
                if (payload.rule, payload.target) not in self.open:
                    self._opened(event, payload)
            else:
                resolved = msgspec.json.decode(event.data, type=AlertResolved)
                if (resolved.rule, resolved.target) in self.open:
                    self._closed(event, resolved)
        except msgspec.DecodeError:
            return

    def on_heartbeat(self, system: str, at: datetime) -> None:
        previous = self.heartbeats.get(system)
        if previous is not None and at <= previous:
            return
        self.heartbeats[system] = at
        for rule in self.rules:
            if rule.kind == "engine-unreachable":
                current = self.open.get((rule.name, system))
                if current is None:
                    continue
                silent_since = current.facts.get("last_heartbeat")
                if silent_since is None or at.isoformat() > str(silent_since):
                    self._resolve(rule, system, at, "heartbeats again")

    def tick(self, now: datetime) -> None:
        self._last_tick = now
        for rule in self.rules:
            handler = getattr(self, f"_tick_{rule.kind.replace('-', '_')}", None)
            if handler is not None:
                handler(rule, now)

    # --- kill-switch-used -----------------------------------------------------------------

    def _on_kill_switch_used(self, rule: r.KillSwitchUsed, seq: int, at: datetime, event: Envelope) -> None:
        if event.type == "kill_switch_engaged":
            data = _data(event)
            self._fire_kill_switch(
                rule,
                seq,
                at,
                event,
                f"by {event.actor}: {data.get('reason') or 'no reason given'}",
                {"actor": event.actor, "via": "gateway", "succeeded": data.get("succeeded")},
            )
        elif (data := _command(event)) is not None and (
            data.get("origin") == "all" and data.get("verb") == "stop" and data.get("outcome") == "accepted"
        ):
            self._fire_kill_switch(
                rule,
                seq,
                at,
                event,
                f"broadcast stop by {event.actor}: {data.get('reason') or 'no reason given'}",
                {"actor": event.actor, "via": "nats", "subject": str(data.get("subject", ""))[:200]},
            )
        # (not elif: a start's own lifecycle event carries its command too)
        if (
            event.type == "lifecycle_changed"
            and (rule.name, "all") in self.open
            and self._every_system_running()
        ):
            self._resolve(rule, "all", at, "every system is running again")

    def _fire_kill_switch(
        self,
        rule: r.KillSwitchUsed,
        seq: int,
        at: datetime,
        event: Envelope,
        detail: str,
        facts: dict[str, Any],
    ) -> None:
        self._fire(
            rule,
            "all",
            event.id,
            at,
            title="kill switch engaged",
            detail=detail,
            trigger=event,
            trigger_seq=seq,
            facts=facts,
        )

    def _every_system_running(self) -> bool:
        return all(state == "running" for system, state in self.lifecycle.items() if system in SYSTEMS)

    # --- engine-unreachable ---------------------------------------------------------------

    def _tick_engine_unreachable(self, rule: r.EngineUnreachable, now: datetime) -> None:
        if self.replaying:
            return  # heartbeats are read after the replay
        limit = timedelta(seconds=rule.for_s)
        for system, last in self.heartbeats.items():
            if now - last > limit:
                self._fire(
                    rule,
                    system,
                    last.isoformat(),
                    now,
                    title=f"no heartbeat for more than {rule.for_s:g} s",
                    detail=f"last heartbeat {last.isoformat()}",
                    facts={"last_heartbeat": last.isoformat(), "for_s": rule.for_s},
                )

    # --- engine-crash-loop ----------------------------------------------------------------

    def _on_engine_crash_loop(self, rule: r.EngineCrashLoop, seq: int, at: datetime, event: Envelope) -> None:
        system = event.system
        if event.type == "process_crashed":
            exit_at = at
        elif event.type == "engine_recovered":
            # an engine back after an unclean end; the launcher's process_crashed for the
            # same exit (when there is a launcher) must not count twice
            downtime = _data(event).get("downtime_s")
            exit_at = at - timedelta(seconds=float(downtime)) if isinstance(downtime, int | float) else at
            signals = self._crash_signals[system]
            margin = timedelta(seconds=5)
            for index, (crashed_at, matched) in enumerate(signals):
                if not matched and exit_at - margin <= crashed_at <= at:
                    signals[index] = (crashed_at, True)
                    return
        else:
            return
        window = timedelta(seconds=rule.window_s)
        if event.type == "process_crashed":
            self._crash_signals[system].append((at, False))
            while self._crash_signals[system] and self._crash_signals[system][0][0] < at - 2 * window:
                self._crash_signals[system].popleft()
        exits = self._crashes[(rule.name, system)]
        exits.append((exit_at, event.type == "process_crashed"))
        while exits and exits[0][0] < at - window:
            exits.popleft()
        if len(exits) >= rule.count:
            self._fire(
                rule,
                system,
                str(seq),
                at,
                title=f"{len(exits)} unclean exits within {rule.window_s:g} s",
                detail=_last_exit(event),
                trigger=event,
                trigger_seq=seq,
                facts={"exits": len(exits), "window_s": rule.window_s},
            )

    def _tick_engine_crash_loop(self, rule: r.EngineCrashLoop, now: datetime) -> None:
        window = timedelta(seconds=rule.window_s)
        for (name, system), exits in self._crashes.items():
            if name != rule.name or (rule.name, system) not in self.open:
                continue
            last = exits[-1][0] if exits else None
            if last is None or now - last >= window:
                self._resolve(rule, system, now, f"no unclean exit for {rule.window_s:g} s")

    # --- after-hours-stop -----------------------------------------------------------------

    def _on_after_hours_stop(self, rule: r.AfterHoursStop, seq: int, at: datetime, event: Envelope) -> None:
        if (data := _command(event)) is not None and data.get("verb") == "stop":
            target = str(data.get("target") or event.system)
            if data.get("verb") != "stop" or data.get("outcome") != "accepted" or target not in SYSTEMS:
                return
            local = at.astimezone(rule.zone)
            if rule.business_hours.contains(local.weekday(), local.time().replace(tzinfo=None)):
                return
            self._fire(
                rule,
                target,
                event.id,
                at,
                title="stopped outside business hours",
                detail=f"by {event.actor} at {local.strftime('%a %H:%M')} {rule.timezone}: "
                f"{data.get('reason') or 'no reason given'}",
                trigger=event,
                trigger_seq=seq,
                facts={"actor": event.actor, "local_time": local.isoformat(), "timezone": rule.timezone},
            )
        elif event.type == "lifecycle_changed" and _data(event).get("state") == "running":
            self._resolve(rule, event.system, at, "running again")

    # --- rejected-command-burst -----------------------------------------------------------

    def _on_rejected_command_burst(
        self, rule: r.RejectedCommandBurst, seq: int, at: datetime, event: Envelope
    ) -> None:
        if event.type != "command_handled":
            return
        data = _data(event)
        if data.get("outcome") != "rejected":
            return
        repeats = data.get("repeats", 0)
        count = 1 + (repeats if isinstance(repeats, int) and repeats > 0 else 0)
        actor = event.actor[:TARGET_MAX]
        seen = self._rejections[(rule.name, actor)]
        seen.append((at, count))
        window = timedelta(seconds=rule.window_s)
        while seen and seen[0][0] < at - window:
            seen.popleft()
        total = sum(n for _, n in seen)
        if total >= rule.count:
            self._fire(
                rule,
                actor,
                str(seq),
                at,
                title=f"{total} refused commands within {rule.window_s:g} s",
                detail=f"latest: {data.get('verb')} {data.get('target')}: "
                + str(data.get("message", ""))[:200],
                trigger=event,
                trigger_seq=seq,
                facts={"refused": total, "window_s": rule.window_s},
            )

    def _tick_rejected_command_burst(self, rule: r.RejectedCommandBurst, now: datetime) -> None:
        window = timedelta(seconds=rule.window_s)
        for (name, actor), seen in list(self._rejections.items()):
            if name != rule.name:
                continue
            while seen and seen[0][0] < now - window:
                seen.popleft()
            if not seen:
                self._resolve(rule, actor, now, f"no refused command for {rule.window_s:g} s")
                del self._rejections[(name, actor)]

    # --- soc-escalation-rate --------------------------------------------------------------

    def _on_soc_escalation_rate(
        self, rule: r.SocEscalationRate, seq: int, at: datetime, event: Envelope
    ) -> None:
        if event.type != "escalated_to_human":
            return
        seen = self._escalations[rule.name]
        seen.append(at)
        window = timedelta(seconds=rule.window_s)
        while seen and seen[0] < at - window:
            seen.popleft()
        if len(seen) >= rule.count:
            self._fire(
                rule,
                event.system,
                str(seq),
                at,
                title=f"{len(seen)} alerts escalated to a human within {rule.window_s:g} s",
                detail="triage is handing more than usual to analysts",
                trigger=event,
                trigger_seq=seq,
                facts={"escalations": len(seen), "window_s": rule.window_s},
            )

    def _tick_soc_escalation_rate(self, rule: r.SocEscalationRate, now: datetime) -> None:
        seen = self._escalations[rule.name]
        window = timedelta(seconds=rule.window_s)
        while seen and seen[0] < now - window:
            seen.popleft()
        for name, target in list(self.open):
            if name == rule.name and len(seen) < rule.resolve_threshold:
                self._resolve(rule, target, now, f"{len(seen)} escalations in the last {rule.window_s:g} s")


def _last_exit(event: Envelope) -> str:
    data = _data(event)
    if event.type == "engine_recovered":
        return f"recovered after {data.get('downtime_s')} s down"
    if data.get("signal"):
        return f"last: signal {data['signal']}"
    return f"last: exit code {data.get('exit_code')}"
