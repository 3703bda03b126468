"""The SOC and ML read models of the gateway, as projections of the streams.

``SocProjection`` folds soc-cycle's events (decisions, hand-overs to humans, playbook
runs, hunt findings) and the analysts' verdicts (``AOC_FEEDBACK``) into one row per
decided alert; ``ModelsProjection`` folds ml-retrain's evaluations and publications and
the SOC's reloads. Both are pure; ``SocFeed`` wires them to JetStream with ordered
consumers (replay from the start, then follow live), like the activity projection.

Cursor: a row's ``pos`` = stream sequence x 1024 + its index in the event (an event
holds at most 500 decisions), so it is stable across gateway restarts.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from contracts import ml, soc, subjects
from contracts.settings import Settings
from gateway.projections import ChangeSignal

log = structlog.get_logger()

SOC_SYSTEM = "soc-cycle"
POS_SHIFT = 1024


class _Envelope(msgspec.Struct):
    type: str
    time: str
    actor: str = "system"
    data: msgspec.Raw = msgspec.Raw(b"{}")


_decode_envelope = msgspec.json.Decoder(_Envelope).decode
_decoders = {
    name: msgspec.json.Decoder(kind)
    for name, kind in {**soc.SOC_PAYLOAD_TYPES, **ml.ML_PAYLOAD_TYPES}.items()
}


def _decode_known(data: bytes) -> tuple[_Envelope, Any] | None:
    """The envelope and typed payload of an event these views fold; None for other types
    and for what does not decode (a projection skips it rather than stopping)."""
    try:
        envelope = _decode_envelope(data)
        decoder = _decoders.get(envelope.type)
        return None if decoder is None else (envelope, decoder.decode(envelope.data))
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


@dataclass(slots=True)
class AlertRow:
    pos: int
    decision: soc.Decision
    feedback: dict[str, Any] | None = None
    escalated_to_human_at: str | None = None
    playbook: dict[str, Any] | None = None
    findings: list[dict[str, Any]] | None = None

    @property
    def id(self) -> str:
        return self.decision.alert.id

    @property
    def status(self) -> str:
        if self.feedback is not None:
            return "reviewed"
        if self.decision.decision == "contain":
            return "contained"
        if self.playbook is not None:
            return "contained"  # an analyst confirmed it and SOAR ran
        if self.escalated_to_human_at is not None:
            return "escalated_to_human"
        return "auto_resolved" if self.decision.decision == "auto_resolve" else "escalated"

    def alert_view(self) -> dict[str, Any]:
        decision = self.decision
        return {
            **msgspec.to_builtins(decision.alert),
            "time": iso(decision.alert.time),
            "status": self.status,
            "decision": decision.decision,
            "scores": msgspec.to_builtins(decision.scores),
            "model_version": decision.model_version,
            "decided_at": iso(decision.decided_at),
            "sla_due": iso(decision.sla_due),
            "escalated_to_human_at": self.escalated_to_human_at,
            "feedback": self.feedback,
            "playbook": self.playbook,
            "findings": self.findings or [],
            "cursor": self.pos,
        }

    def decision_view(self) -> dict[str, Any]:
        decision, alert = self.decision, self.decision.alert
        return {
            "alert_id": alert.id,
            "title": alert.title,
            "severity": alert.severity,
            "source": alert.source,
            "host": alert.host,
            "user": alert.user,
            "decision": decision.decision,
            "scores": msgspec.to_builtins(decision.scores),
            "reasons": decision.reasons,
            "model_version": decision.model_version,
            "decided_at": iso(decision.decided_at),
            "sla_due": iso(decision.sla_due),
            "status": self.status,
            "cursor": self.pos,
        }


class SocProjection:
    def __init__(self, window: int = 200_000) -> None:
        self.window = window
        self.rows: list[AlertRow] = []
        self.by_id: dict[str, AlertRow] = {}
        self.totals = soc.Totals()
        self.pending_feedback: dict[str, dict[str, Any]] = {}  # verdicts that overtook their decision
        self.hunts: deque[dict[str, Any]] = deque(maxlen=50)
        self.playbook_results: dict[str, int] = {}
        self.rejected = 0
        self.applied_seq = 0
        self.feedback_seq = 0

    def apply_event(self, seq: int, data: bytes) -> None:
        if seq <= self.applied_seq:
            return
        self.applied_seq = seq
        decoded = _decode_known(data)
        if decoded is None:
            return
        envelope, payload = decoded
        if isinstance(payload, soc.AlertsTriaged):
            for index, decision in enumerate(payload.decisions):
                self._add(seq * POS_SHIFT + index, decision)
        elif isinstance(payload, soc.EscalatedToHuman):
            row = self.by_id.get(payload.alert_id)
            if row is not None:
                row.escalated_to_human_at = envelope.time
        elif isinstance(payload, soc.PlaybookExecuted):
            row = self.by_id.get(payload.alert_id)
            if row is not None:
                row.playbook = {
                    "name": payload.playbook,
                    "trigger": payload.trigger,
                    "result": payload.result,
                    "actions": payload.actions,
                    "time": envelope.time,
                }
            self.playbook_results[payload.result] = self.playbook_results.get(payload.result, 0) + 1
        elif isinstance(payload, soc.ThreatHuntCompleted):
            findings = [msgspec.to_builtins(f) for f in payload.findings]
            for finding in findings:
                row = self.by_id.get(finding["alert_id"])
                if row is not None:
                    row.findings = [*(row.findings or []), finding]
            self.hunts.append(
                {
                    "time": envelope.time,
                    "alerts_searched": payload.alerts_searched,
                    "advisories": payload.advisories,
                    "iocs": payload.iocs,
                    "findings": findings,
                }
            )
        elif isinstance(payload, soc.AlertRejected):
            self.rejected += 1
        totals = getattr(payload, "totals", None)
        if totals is not None:
            self.totals = soc.Totals(
                **{f: max(getattr(self.totals, f), getattr(totals, f)) for f in soc.Totals.__struct_fields__}
            )

    def _add(self, pos: int, decision: soc.Decision) -> None:
        row = AlertRow(pos, decision, feedback=self.pending_feedback.pop(decision.alert.id, None))
        previous = self.by_id.get(row.id)
        if previous is not None:  # a re-decided alert (only after it left the SOC's memory)
            with contextlib.suppress(ValueError):
                self.rows.remove(previous)
        self.rows.append(row)
        self.by_id[row.id] = row
        if len(self.rows) > self.window + self.window // 10:
            for old in self.rows[: len(self.rows) - self.window]:
                if self.by_id.get(old.id) is old:
                    del self.by_id[old.id]
            del self.rows[: len(self.rows) - self.window]

    def apply_feedback(self, seq: int, data: bytes) -> None:
        if seq <= self.feedback_seq:
            return
        self.feedback_seq = seq
        try:
            verdict = soc.feedback_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        view = {
            "id": verdict.id,
            "verdict": verdict.verdict,
            "analyst": verdict.analyst,
            "note": verdict.note,
            "time": iso(verdict.time),
        }
        row = self.by_id.get(verdict.alert_id)
        if row is None:
            self.pending_feedback[verdict.alert_id] = view
        else:
            row.feedback = view

    # --- reads --------------------------------------------------------------------------

    def query(
        self,
        *,
        limit: int,
        before: int | None = None,
        status: str | None = None,
        decision: str | None = None,
        severity: str | None = None,
        source: str | None = None,
        host: str | None = None,
        user: str | None = None,
        technique: str | None = None,
        model_version: str | None = None,
        min_threat: float | None = None,
        text: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[AlertRow]:
        """Newest first; ``before`` is a cursor (exclusive)."""
        end = len(self.rows) if before is None else bisect.bisect_left(self.rows, before, key=_pos)
        needle = text.lower() if text else None
        found: list[AlertRow] = []
        for index in range(end - 1, -1, -1):
            row = self.rows[index]
            d = row.decision
            decided = iso(d.decided_at) or ""
            if since is not None and decided < since:
                break  # rows are in stream order
            alert = d.alert
            if (
                (status is None or row.status == status)
                and (decision is None or d.decision == decision)
                and (severity is None or alert.severity == severity)
                and (source is None or alert.source == source)
                and (host is None or alert.host == host)
                and (user is None or alert.user == user)
                and (technique is None or any(t.startswith(technique) for t in alert.techniques))
                and (model_version is None or d.model_version == model_version)
                and (min_threat is None or d.scores.threat >= min_threat)
                and (until is None or decided <= until)
                and (needle is None or _contains(alert, needle))
            ):
                found.append(row)
                if len(found) >= limit:
                    break
        return found

    def stats(self) -> dict[str, Any]:
        statuses: dict[str, int] = {}
        for row in self.rows:
            statuses[row.status] = statuses.get(row.status, 0) + 1
        return {
            "totals": msgspec.to_builtins(self.totals),
            "alerts_in_view": len(self.rows),
            "by_status": statuses,
            "playbook_results": dict(self.playbook_results),
            "rejected": self.rejected,
            "applied_seq": self.applied_seq,
        }


def _pos(row: AlertRow) -> int:
    return row.pos


def _contains(alert: soc.AlertSummary, needle: str) -> bool:
    haystack = (alert.id, alert.title, alert.host, alert.user, alert.src_ip or "", alert.dst_ip or "")
    return any(needle in value.lower() for value in haystack)


class ModelsProjection:
    """Every evaluated version with its metrics, which one is active, which one the SOC uses."""

    def __init__(self) -> None:
        self.versions: dict[str, dict[str, Any]] = {}
        self.active: str | None = None
        self.soc_version: str | None = None
        self.refusals: deque[dict[str, Any]] = deque(maxlen=20)
        self.applied_seq = 0  # ml-retrain's events
        self.reload_seq = 0  # soc-cycle's models_reloaded events

    def apply_reload(self, seq: int, data: bytes) -> None:
        if seq <= self.reload_seq:
            return
        self.reload_seq = seq
        try:
            reloaded = _decoders[soc.ModelsReloaded.TYPE].decode(_decode_envelope(data).data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        if reloaded.ok:
            self.soc_version = reloaded.version
        else:
            self.refusals.append({"by": SOC_SYSTEM, "version": reloaded.version, "error": reloaded.error})

    def apply_event(self, seq: int, data: bytes) -> None:
        if seq <= self.applied_seq:
            return
        self.applied_seq = seq
        decoded = _decode_known(data)
        if decoded is None:
            return
        _, payload = decoded
        if isinstance(payload, ml.ModelEvaluated):
            self.versions[payload.version] = {
                "version": payload.version,
                "reason": payload.reason,
                "evaluated_at": iso(payload.evaluated_at),
                "promoted": payload.promoted,
                "verdict": payload.verdict,
                "metrics": payload.candidate,
                "compared_with": payload.active_version,
                "compared_metrics": payload.active,
                "training_samples": payload.training_samples,
                "feedback_samples": payload.feedback_samples,
                "new_verdicts": payload.buffered,
                "duration_s": payload.duration_s,
                "published_at": None,
            }
        elif isinstance(payload, ml.ModelPublished):
            self.active = payload.pointer.version
            entry = self.versions.setdefault(payload.pointer.version, {"version": payload.pointer.version})
            entry["published_at"] = iso(payload.pointer.published)
            entry["sha256"] = payload.pointer.sha256
            entry["objects"] = payload.pointer.objects
        elif isinstance(payload, ml.ModelRefused):
            self.refusals.append({"by": "ml-retrain", "version": payload.version, "error": payload.reason})

    def view(self) -> dict[str, Any]:
        versions = sorted(self.versions.values(), key=lambda v: _version_number(v["version"]), reverse=True)
        return {
            "active": self.active,
            "soc_version": self.soc_version,
            "versions": [{**v, "active": v["version"] == self.active} for v in versions],
            "count": len(versions),
            "refusals": list(self.refusals),
        }


def _version_number(version: str) -> int:
    return int(version[1:]) if version[:1] == "v" and version[1:].isdigit() else -1


class SocFeed:
    """Ordered consumers (replay, then live) feeding both projections."""

    def __init__(
        self, nc: Client, settings: Settings, alerts: SocProjection, models: ModelsProjection
    ) -> None:
        self.js = nc.jetstream()
        self.settings = settings
        self.alerts = alerts
        self.models = models
        self.replayed = asyncio.Event()
        self._waiting: set[str] = set()
        self._subs: list[Any] = []
        self._changed = ChangeSignal()

    async def start(self) -> None:
        await soc.ensure_soc_streams(self.js, self.settings)
        feeds = [
            (subjects.evt(SOC_SYSTEM, ">"), self.alerts.apply_event, self.alerts.applied_seq),
            (soc.FEEDBACK_QUEUE, self.alerts.apply_feedback, self.alerts.feedback_seq),
            (subjects.evt(ml.ML_SYSTEM, ">"), self.models.apply_event, self.models.applied_seq),
            (
                subjects.evt(SOC_SYSTEM, soc.ModelsReloaded.TYPE),
                self.models.apply_reload,
                self.models.reload_seq,
            ),
        ]
        self._waiting = {subject for subject, _, _ in feeds}
        for subject, apply, after in feeds:
            self._subs.append(await self._follow(subject, apply, after))

    async def _follow(self, subject: str, apply: Any, after: int) -> Any:
        async def on_msg(msg: Msg) -> None:
            meta = msg.metadata
            apply(meta.sequence.stream, msg.data)
            if meta.num_pending == 0:
                self._caught_up(subject)
            self._changed.notify()

        config = (
            ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1)
            if after
            else ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        )
        sub = await self.js.subscribe(subject, ordered_consumer=True, cb=on_msg, config=config)
        info = await sub.consumer_info()
        if info.num_pending == 0 and (info.delivered is None or not info.delivered.consumer_seq):
            self._caught_up(subject)
        return sub

    @property
    def waiting(self) -> set[str]:
        """Subjects whose replay has not caught up yet."""
        return set(self._waiting)

    def _caught_up(self, subject: str) -> None:
        self._waiting.discard(subject)
        if not self._waiting:
            self.replayed.set()

    async def wait_changed(self, timeout: float) -> bool:
        return await self._changed.wait(timeout)

    async def resubscribe(self) -> None:
        """Follow again from what was applied (after the server lost our consumers)."""
        await self.stop()
        await self.start()

    async def stop(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
