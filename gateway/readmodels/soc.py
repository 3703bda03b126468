"""The SOC and ML views of the gateway (pure).

``AlertsView`` folds soc-cycle's events (decisions, hand-overs to humans, playbook
runs, hunt findings) and the analysts' verdicts (AOC_FEEDBACK) into one row per decided
alert, with indexes for the alert list's filters. ``ModelsView`` folds ml-retrain's
evaluations and publications and the SOC's reloads.

Cursor: a row's ``pos`` = stream sequence x 1024 + its index in the event (an event
holds at most 500 decisions), so it is stable across gateway restarts.

Rows are never changed in place: a verdict or a playbook run replaces the row (so a
snapshot can copy the list of rows and let the view move on). An alert decided again
(only after it left the SOC's memory) supersedes its old row, which stays in the list,
marked, and is skipped by every read.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterator
from typing import Any

import msgspec

from contracts import ml, soc
from gateway.isotime import iso
from gateway.readmodels.base import FeedEvent, View
from gateway.readmodels.index import (
    Candidates,
    Postings,
    WordPostings,
    field_candidates,
    listed_under,
    matches_at_word_start,
    newest_first,
    shortest,
    text_candidates,
    word_set,
)

SOC_SYSTEM = "soc-cycle"
POS_SHIFT = 1024
STATUSES = ("auto_resolved", "escalated", "escalated_to_human", "contained", "reviewed")
ROWS_PER_FRAME = 1_000  # one encoding call each, ~1 ms: the loop never waits long for the GIL

_decoders = {
    name: msgspec.json.Decoder(kind).decode
    for name, kind in {**soc.SOC_PAYLOAD_TYPES, **ml.ML_PAYLOAD_TYPES}.items()
}


def _payload(event: FeedEvent) -> Any:
    """The typed payload of an event these views fold; None for other types and for what
    does not decode (a view skips it rather than stopping)."""
    decode = _decoders.get(event.type)
    if decode is None:
        return None
    try:
        return decode(event.data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


class AlertRow(msgspec.Struct, array_like=True):
    no: int  # row number in the view (index.py)
    pos: int
    decision: soc.Decision
    feedback: dict[str, Any] | None = None
    escalated_to_human_at: str | None = None
    playbook: dict[str, Any] | None = None
    findings: list[dict[str, Any]] | None = None
    superseded: bool = False

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


def _threat_band(threat: float) -> int:
    return min(max(int(threat // 10), 0), 10)


class _Meta(msgspec.Struct, array_like=True):
    window: int
    base: int
    live: int
    applied_seq: int
    feedback_seq: int
    counts: dict[str, soc.Totals]
    pending_feedback: dict[str, dict[str, Any]]
    hunts: list[dict[str, Any]]
    playbook_results: dict[str, int]
    rejected: int
    frames: int


# JSON, not msgpack: it keeps a datetime's own UTC offset (msgpack turns it into UTC)
_encode = msgspec.json.encode
_meta = msgspec.json.Decoder(_Meta).decode
_rows = msgspec.json.Decoder(list[AlertRow]).decode
_field_postings = msgspec.msgpack.Decoder(list[tuple[tuple[str, str], bytes]]).decode
_str_postings = msgspec.msgpack.Decoder(list[tuple[str, bytes]]).decode
_word_postings = msgspec.msgpack.Decoder(list[tuple[bytes, bytes]]).decode


class AlertsView(View):
    name = "alerts"
    systems = frozenset({SOC_SYSTEM})

    def __init__(self, window: int = 200_000) -> None:
        super().__init__()
        self.window = window
        self.rows: list[AlertRow] = []
        self.base = 0
        self.live = 0  # rows not superseded
        self.by_id: dict[str, AlertRow] = {}
        self.counts: dict[str, soc.Totals] = {}  # every SOC instance's share of the counters
        self.pending_feedback: dict[str, dict[str, Any]] = {}  # verdicts that overtook their decision
        self.hunts: deque[dict[str, Any]] = deque(maxlen=50)
        self.playbook_results: dict[str, int] = {}
        self.rejected = 0
        self.applied_seq = 0
        self.feedback_seq = 0
        self.fields = Postings()  # ("decision" | "severity" | ..., value) -> row numbers
        self.statuses = Postings()  # status -> row numbers (changes as verdicts arrive)
        self.techniques = Postings()  # MITRE technique id -> row numbers
        self.words = WordPostings()  # words of id, title, host, user, IPs

    # --- applying -------------------------------------------------------------------

    def apply(self, seq: int, event: FeedEvent, raw: bytes) -> None:
        if seq <= self.applied_seq:
            return
        self.applied_seq = seq
        payload = _payload(event)
        if payload is None:
            return
        if isinstance(payload, soc.AlertsTriaged):
            for index, decision in enumerate(payload.decisions):
                self._add(seq * POS_SHIFT + index, decision)
        elif isinstance(payload, soc.EscalatedToHuman):
            row = self.by_id.get(payload.alert_id)
            if row is not None:
                self._replace(row, escalated_to_human_at=event.time)
        elif isinstance(payload, soc.PlaybookExecuted):
            row = self.by_id.get(payload.alert_id)
            if row is not None:
                playbook = {
                    "name": payload.playbook,
                    "trigger": payload.trigger,
                    "result": payload.result,
                    "actions": payload.actions,
                    "time": event.time,
                }
                self._replace(row, playbook=playbook)
            self.playbook_results[payload.result] = self.playbook_results.get(payload.result, 0) + 1
        elif isinstance(payload, soc.ThreatHuntCompleted):
            findings = [msgspec.to_builtins(f) for f in payload.findings]
            for finding in findings:
                row = self.by_id.get(finding["alert_id"])
                if row is not None:
                    self._replace(row, findings=[*(row.findings or []), finding])
            self.hunts.append(
                {
                    "time": event.time,
                    "alerts_searched": payload.alerts_searched,
                    "advisories": payload.advisories,
                    "iocs": payload.iocs,
                    "findings": findings,
                }
            )
        elif isinstance(payload, soc.AlertRejected):
            self.rejected += 1
        counts = soc.counts_of(payload)
        if counts is not None:
            soc.merge_counts(self.counts, counts)

    @property
    def totals(self) -> soc.Totals:
        return soc.sum_counts(self.counts)

    def _add(self, pos: int, decision: soc.Decision) -> None:
        no = self.base + len(self.rows)
        row = AlertRow(no, pos, decision, feedback=self.pending_feedback.pop(decision.alert.id, None))
        previous = self.by_id.get(row.id)
        if previous is not None:  # a re-decided alert (only after it left the SOC's memory)
            self._set(msgspec.structs.replace(previous, superseded=True), previous)
            self.live -= 1
        self.rows.append(row)
        self.by_id[row.id] = row
        self.live += 1
        alert = decision.alert
        fields = self.fields
        for key in (
            ("decision", decision.decision),
            ("severity", alert.severity),
            ("source", alert.source),
            ("host", alert.host),
            ("user", alert.user),
            ("model", decision.model_version),
            ("threat", str(_threat_band(decision.scores.threat))),
        ):
            fields.add(key, no)
        self.statuses.add(row.status, no)
        for technique in set(alert.techniques):
            self.techniques.add(technique, no)
        for word in word_set(_searchable(alert)):
            self.words.add(word, no)
        if len(self.rows) > self.window + self.window // 10:
            self._trim()

    def _trim(self) -> None:
        dropped = len(self.rows) - self.window
        for old in self.rows[:dropped]:
            if self.by_id.get(old.id) is old:
                del self.by_id[old.id]
            if not old.superseded:
                self.live -= 1
        del self.rows[:dropped]
        self.base += dropped
        for postings in (self.fields, self.statuses, self.techniques, self.words):
            postings.trim(self.base)

    def _replace(self, row: AlertRow, **changes: Any) -> AlertRow:
        new = msgspec.structs.replace(row, **changes)
        self._set(new, row)
        if self.by_id.get(row.id) is row:
            self.by_id[row.id] = new
        return new

    def _set(self, new: AlertRow, old: AlertRow) -> None:
        index = new.no - self.base
        if 0 <= index < len(self.rows) and self.rows[index] is old:
            self.rows[index] = new
        before, after = old.status, (None if new.superseded else new.status)
        if before != after:
            self.statuses.remove(before, new.no)
            if after is not None:
                self.statuses.insert(after, new.no)

    def apply_feedback(self, seq: int, data: bytes, _at: Any = None) -> None:
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
            self._replace(row, feedback=view)

    # --- reads --------------------------------------------------------------------------

    def get(self, alert_id: str) -> AlertRow | None:
        return self.by_id.get(alert_id)

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
        rows, base = self.rows, self.base
        end = base + (len(rows) if before is None else bisect.bisect_left(rows, before, key=_pos))
        needle = text.lower() if text else None
        driver = shortest(
            (
                field_candidates(self.fields, "decision", decision),
                field_candidates(self.fields, "severity", severity),
                field_candidates(self.fields, "source", source),
                field_candidates(self.fields, "host", host),
                field_candidates(self.fields, "user", user),
                field_candidates(self.fields, "model", model_version),
                None if status is None else listed_under(self.statuses, status),
                None
                if technique is None
                else Candidates(
                    [found for t, found in self.techniques.lists.items() if t.startswith(technique)]
                ),
                None
                if min_threat is None
                else Candidates(
                    [
                        found
                        for band in range(_threat_band(min_threat), 11)
                        if (found := self.fields.get(("threat", str(band)))) is not None
                    ]
                ),
                None if needle is None else text_candidates(self.words, needle),
            )
        )
        found: list[AlertRow] = []
        for no in newest_first(driver, base, end):
            row = rows[no - base]
            if row.superseded:
                continue
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
        return {
            "totals": msgspec.to_builtins(self.totals),
            "totals_by_instance": msgspec.to_builtins(self.counts),
            "alerts_in_view": self.live,
            "by_status": {s: len(found) for s in STATUSES if (found := self.statuses.get(s))},
            "playbook_results": dict(self.playbook_results),
            "rejected": self.rejected,
            "applied_seq": self.applied_seq,
        }

    # --- snapshots ----------------------------------------------------------------------

    def cut(self) -> Any:
        meta = _Meta(
            self.window,
            self.base,
            self.live,
            self.applied_seq,
            self.feedback_seq,
            dict(self.counts),
            dict(self.pending_feedback),
            list(self.hunts),
            dict(self.playbook_results),
            self.rejected,
            -(-len(self.rows) // ROWS_PER_FRAME),
        )
        statuses = [(key, found[:], len(found)) for key, found in self.statuses.lists.items()]
        return meta, list(self.rows), self.fields.cut(), statuses, self.techniques.cut(), self.words.cut()

    @staticmethod
    def encode(cut: Any) -> Iterator[bytes]:
        meta, rows, fields, statuses, techniques, word_lists = cut
        yield _encode(meta)
        for start in range(0, len(rows), ROWS_PER_FRAME):
            yield _encode(rows[start : start + ROWS_PER_FRAME])
        # the index lists are machine integers: msgpack carries their bytes as they are
        yield msgspec.msgpack.encode(Postings.encode_cut(fields))
        yield msgspec.msgpack.encode(Postings.encode_cut(statuses))
        yield msgspec.msgpack.encode(Postings.encode_cut(techniques))
        yield msgspec.msgpack.encode(Postings.encode_cut(word_lists))

    def restore(self, frames: Iterator[bytes]) -> None:
        meta = _meta(next(frames))
        if meta.window != self.window:
            raise ValueError(f"alerts window was {meta.window}, is {self.window}")
        rows: list[AlertRow] = []
        for _ in range(meta.frames):
            rows.extend(_rows(next(frames)))
        self.rows, self.base, self.live = rows, meta.base, meta.live
        self.by_id = {}
        for row in rows:
            if not row.superseded:
                self.by_id[row.id] = row
        self.applied_seq, self.feedback_seq = meta.applied_seq, meta.feedback_seq
        self.counts, self.pending_feedback = meta.counts, meta.pending_feedback
        self.hunts = deque(meta.hunts, maxlen=50)
        self.playbook_results, self.rejected = meta.playbook_results, meta.rejected
        self.fields.restore(_field_postings(next(frames)))
        self.statuses.restore(_str_postings(next(frames)))
        self.techniques.restore(_str_postings(next(frames)))
        self.words.restore(_word_postings(next(frames)))


def _pos(row: AlertRow) -> int:
    return row.pos


def _searchable(alert: soc.AlertSummary) -> str:
    return " ".join(
        (alert.id, alert.title, alert.host, alert.user, alert.src_ip or "", alert.dst_ip or "")
    ).lower()


def _contains(alert: soc.AlertSummary, needle: str) -> bool:
    haystack = (alert.id, alert.title, alert.host, alert.user, alert.src_ip or "", alert.dst_ip or "")
    return any(matches_at_word_start(value.lower(), needle) for value in haystack)


class ModelsView(View):
    """Every evaluated version with its metrics, which one is active, which one the SOC uses."""

    name = "models"
    systems = frozenset({ml.ML_SYSTEM})
    event_types = frozenset({soc.ModelsReloaded.TYPE})

    def __init__(self) -> None:
        super().__init__()
        self.versions: dict[str, dict[str, Any]] = {}
        self.active: str | None = None
        self.soc_version: str | None = None
        self.refusals: deque[dict[str, Any]] = deque(maxlen=20)
        self.applied_seq = 0

    def apply(self, seq: int, event: FeedEvent, raw: bytes) -> None:
        if seq <= self.applied_seq:
            return
        self.applied_seq = seq
        if event.type == soc.ModelsReloaded.TYPE:
            if event.system == SOC_SYSTEM:
                self._reloaded(event)
            return
        if event.system != ml.ML_SYSTEM:
            return
        payload = _payload(event)
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

    def _reloaded(self, event: FeedEvent) -> None:
        reloaded = _payload(event)
        if not isinstance(reloaded, soc.ModelsReloaded):
            return
        if reloaded.ok:
            self.soc_version = reloaded.version
        else:
            self.refusals.append({"by": SOC_SYSTEM, "version": reloaded.version, "error": reloaded.error})

    def view(self) -> dict[str, Any]:
        versions = sorted(self.versions.values(), key=lambda v: _version_number(v["version"]), reverse=True)
        return {
            "active": self.active,
            "soc_version": self.soc_version,
            "versions": [{**v, "active": v["version"] == self.active} for v in versions],
            "count": len(versions),
            "refusals": list(self.refusals),
        }

    def cut(self) -> Any:
        return _encode(
            {
                "versions": self.versions,
                "active": self.active,
                "soc_version": self.soc_version,
                "refusals": list(self.refusals),
                "applied_seq": self.applied_seq,
            }
        )

    @staticmethod
    def encode(cut: Any) -> Iterator[bytes]:
        yield cut

    def restore(self, frames: Iterator[bytes]) -> None:
        state = msgspec.json.decode(next(frames))
        self.versions, self.active, self.soc_version = (
            state["versions"],
            state["active"],
            state["soc_version"],
        )
        self.refusals = deque(state["refusals"], maxlen=20)
        self.applied_seq = state["applied_seq"]


def _version_number(version: str) -> int:
    return int(version[1:]) if version[:1] == "v" and version[1:].isdigit() else -1
