"""The requirement ledger: the fold of ``aoc.evt.frontend-factory.requirement_*``.

One pure reducer (no I/O, so it lives in the contract), three readers: the factory
engine rebuilds its state with it at start, the gateway's factory views are the same
fold kept live, and the integrity scan reads it to know which pages are already asked
for. They cannot disagree on what a
requirement's status is, because they run the same code over the same events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from contracts.events import Envelope
from contracts.factory.events import (
    REQUIREMENT_EVENTS,
    RequirementCancelled,
    RequirementDeployed,
    RequirementFailed,
    RequirementGenerated,
    RequirementGenerating,
    RequirementRejected,
    RequirementSubmitted,
)
from contracts.factory.requirement import PRIORITIES, STATUSES, RequirementSubmission

# What each status allows next (the factory checks; the API's 409s quote it).
GENERATE_FROM = ("pending", "failed")
DEPLOY_FROM = ("generated",)
CANCEL_FROM = ("pending", "generated", "failed")
ACTIVE = ("pending", "generating", "generated", "deployed")  # holds its route

_PRIORITY_RANK = {p: rank for rank, p in enumerate(reversed(PRIORITIES))}  # critical first


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass
class Requirement:
    id: str
    submission: RequirementSubmission
    origin: str
    submitted_by: str
    created_at: str
    submitted_seq: int
    status: str = "pending"
    updated_at: str = ""
    seq: int = 0  # the last event that changed it
    attempts: int = 0
    generated: RequirementGenerated | None = None
    deployed: RequirementDeployed | None = None
    deployed_at: str | None = None
    error: str | None = None
    error_stage: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def has_code(self) -> bool:
        return self.generated is not None

    def summary(self) -> dict[str, Any]:
        s = self.submission
        return {
            "id": self.id,
            "title": s.title,
            "page_type": s.page_type,
            "route": s.route,
            "status": self.status,
            "priority": s.priority,
            "requested_by": s.requested_by,
            "has_code": self.has_code,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "error": self.error,
        }

    def detail(self) -> dict[str, Any]:
        generated = self.generated
        return {
            **self.summary(),
            **msgspec.to_builtins(self.submission),
            "origin": self.origin,
            "submitted_by": self.submitted_by,
            "attempts": self.attempts,
            "error_stage": self.error_stage,
            "template_version": generated.template_version if generated else None,
            "code_lines": generated.code_lines if generated else None,
            "code_sha256": generated.code_sha256 if generated else None,
            "generation_time_ms": generated.generation_time_ms if generated else None,
            "file_path": generated.file_path if generated else None,
            "deployed_at": self.deployed_at,
            "deployed_path": self.deployed.file_path if self.deployed else None,
            "history": list(self.history),
        }

    def preview(self) -> dict[str, Any] | None:
        generated = self.generated
        if generated is None:
            return None
        return {
            "id": self.id,
            "status": self.status,
            "template": generated.template,
            "template_version": generated.template_version,
            "file_path": generated.file_path,
            "tsx_code": generated.tsx_code,
            "code_lines": generated.code_lines,
            "code_sha256": generated.code_sha256,
            "generation_time_ms": generated.generation_time_ms,
            "api_wiring": generated.api_wiring,
            "sidebar_entry": generated.sidebar_entry,
        }


@dataclass
class Counters:
    generated: int = 0
    deployed: int = 0
    failed: int = 0
    cancelled: int = 0
    rejected: int = 0
    generation_ms_total: float = 0.0


class Ledger:
    def __init__(self) -> None:
        self.requirements: dict[str, Requirement] = {}
        self.rejected: dict[str, RequirementRejected] = {}  # the latest refusals by id
        self.applied_seq = 0
        self.counters = Counters()

    # --- applying -------------------------------------------------------------------------

    def apply(self, seq: int, event: Envelope) -> Requirement | None:
        """Apply one event in stream order; returns the requirement it changed, if any."""
        if seq <= self.applied_seq:
            return None  # seen already (a replay overlapping the live feed)
        self.applied_seq = seq
        kind = REQUIREMENT_EVENTS.get(event.type)
        if kind is None:
            return None  # lifecycle, cycles, audit: not about a requirement
        try:
            payload = msgspec.json.decode(event.data, type=kind)
        except msgspec.DecodeError:
            return None  # a newer schema this code cannot read; the activity log still shows it
        when = iso(event.time)
        if isinstance(payload, RequirementSubmitted):
            return self._submitted(seq, event, payload, when)
        if isinstance(payload, RequirementRejected):
            self.counters.rejected += 1
            self.rejected[payload.requirement_id] = payload
            while len(self.rejected) > 1000:
                self.rejected.pop(next(iter(self.rejected)))
            return None
        requirement = self.requirements.get(payload.requirement_id)  # type: ignore[attr-defined]
        if requirement is None:
            return None
        if isinstance(payload, RequirementGenerating):
            requirement.attempts = payload.attempt
            self._move(requirement, seq, "generating", when, event.actor, f"template {payload.template}")
        elif isinstance(payload, RequirementGenerated):
            requirement.generated = payload
            requirement.error = requirement.error_stage = None
            self.counters.generated += 1
            self.counters.generation_ms_total += payload.generation_time_ms
            detail = f"{payload.code_lines} lines in {payload.generation_time_ms:.2f} ms"
            self._move(requirement, seq, "generated", when, event.actor, detail)
        elif isinstance(payload, RequirementFailed):
            requirement.error, requirement.error_stage = payload.error, payload.stage
            self.counters.failed += 1
            self._move(requirement, seq, "failed", when, event.actor, f"{payload.stage}: {payload.error}")
        elif isinstance(payload, RequirementDeployed):
            requirement.deployed = payload
            requirement.deployed_at = when
            requirement.error = requirement.error_stage = None
            self.counters.deployed += 1
            self._move(requirement, seq, "deployed", when, event.actor, payload.file_path)
        elif isinstance(payload, RequirementCancelled):
            self.counters.cancelled += 1
            self._move(requirement, seq, "cancelled", when, event.actor, payload.reason)
        return requirement

    def apply_raw(self, seq: int, data: bytes) -> Requirement | None:
        try:
            event = msgspec.json.decode(data, type=Envelope)
        except msgspec.DecodeError:
            self.applied_seq = max(self.applied_seq, seq)
            return None
        return self.apply(seq, event)

    def _submitted(
        self, seq: int, event: Envelope, payload: RequirementSubmitted, when: str
    ) -> Requirement | None:
        if payload.requirement_id in self.requirements:
            return None  # the factory never submits an id twice; a foreign writer might
        requirement = Requirement(
            id=payload.requirement_id,
            submission=payload.submission,
            origin=payload.origin,
            submitted_by=event.actor,
            created_at=when,
            submitted_seq=seq,
        )
        self.requirements[requirement.id] = requirement
        self._move(requirement, seq, "pending", when, event.actor, f"submitted via {payload.origin}")
        return requirement

    @staticmethod
    def _move(requirement: Requirement, seq: int, status: str, when: str, actor: str, detail: str) -> None:
        requirement.status = status
        requirement.updated_at = when
        requirement.seq = seq
        requirement.history.append(
            {"seq": seq, "status": status, "time": when, "actor": actor, "detail": detail[:300]}
        )
        del requirement.history[:-50]

    # --- reading --------------------------------------------------------------------------

    def get(self, requirement_id: str) -> Requirement | None:
        return self.requirements.get(requirement_id)

    def holding_route(self, route: str) -> Requirement | None:
        """The active requirement that owns this page route, if any."""
        return next(
            (r for r in self.requirements.values() if r.submission.route == route and r.status in ACTIVE),
            None,
        )

    def pending(self) -> list[Requirement]:
        """The queue: pending requirements, most urgent first, then oldest first."""
        waiting = [r for r in self.requirements.values() if r.status == "pending"]
        return sorted(waiting, key=lambda r: (_PRIORITY_RANK[r.submission.priority], r.submitted_seq))

    def in_status(self, *statuses: str) -> list[Requirement]:
        return [r for r in self.requirements.values() if r.status in statuses]

    def stats(self) -> dict[str, Any]:
        c = self.counters
        by_status = dict.fromkeys(STATUSES, 0)
        for requirement in self.requirements.values():
            by_status[requirement.status] += 1
        attempts = c.generated + c.deployed + c.failed
        return {
            "total_requirements": len(self.requirements),
            "total_generated": c.generated,
            "total_deployed": c.deployed,
            "total_failed": c.failed,
            "total_cancelled": c.cancelled,
            "total_rejected": c.rejected,
            "avg_generation_time_ms": round(c.generation_ms_total / c.generated, 3) if c.generated else 0.0,
            # generate and deploy attempts that succeeded, in percent
            "success_rate": round((attempts - c.failed) / attempts * 100, 2) if attempts else 100.0,
            "queue_depth": by_status["pending"],
            "by_status": by_status,
        }
