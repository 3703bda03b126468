"""Jobs: the triggers whose work outlasted the reply budget, as the stream tells them.

A trigger that cannot finish within the reply budget is answered ``started`` with a
run id; its audit event (``command_handled``, verb trigger) carries that run id, and the
cycle's result arrives later as ``cycle_completed`` with the same run id and
``manual: true``. Folding those two gives each run a status that survives any gateway
restart: running -> succeeded | failed.

A run can also be lost: an engine that shuts down or crashes mid-cycle never publishes
its result. The engine's next lifecycle event on its own behalf (actor = its slug: the
process shutting down, or a new process starting) ends every run of it still open as
``failed`` with a clear error. Should its result arrive after all, the result wins.

Times: ``accepted`` is when the engine answered the trigger; ``started`` is when the
cycle began (the completion time less its duration once known, ``accepted`` before).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import msgspec

from contracts.events import CommandHandled, CycleCompleted, LifecycleChanged
from gateway.isotime import iso
from gateway.readmodels.base import FeedEvent, View

MAX_JOBS = 10_000  # runs kept in memory, oldest dropped first
LOST = "the engine process ended or restarted before the job finished; no result was recorded"

_payloads = {
    kind.TYPE: msgspec.json.Decoder(kind).decode
    for kind in (CommandHandled, CycleCompleted, LifecycleChanged)
}
EVENT_TYPES = frozenset(_payloads)


class Job(msgspec.Struct):
    run_id: str
    system: str
    actor: str = ""
    status: str = "running"  # running | succeeded | failed
    accepted: str | None = None
    started: str | None = None
    finished: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    command_id: str | None = None
    correlation_id: str = ""
    seq: int = 0  # the last stream sequence that changed this job
    settled: bool = False  # a cycle_completed was seen (nothing overrides it)

    def view(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "system": self.system,
            "actor": self.actor,
            "started": self.started or self.accepted,
            "finished": self.finished,
            "accepted": self.accepted,
            "result": self.result if self.status == "succeeded" else None,
            "error": self.error if self.status == "failed" else None,
            "outcome": self.result,  # the cycle's own record, also of a failed run
            "command_id": self.command_id,
            "correlation_id": self.correlation_id,
            "seq": self.seq,
        }


class JobsView(View):
    name = "jobs"
    event_types = EVENT_TYPES

    def __init__(self, max_jobs: int = MAX_JOBS) -> None:
        super().__init__()
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.applied_seq = 0
        self.max_jobs = max_jobs

    def apply(self, seq: int, event: FeedEvent, raw: bytes) -> None:
        if seq <= self.applied_seq:
            return
        self.applied_seq = seq
        try:
            payload = _payloads[event.type](event.data)
        except (msgspec.DecodeError, msgspec.ValidationError, KeyError):
            return
        if isinstance(payload, CommandHandled):
            self._accepted(seq, event, payload)
        elif isinstance(payload, CycleCompleted):
            self._completed(seq, event, payload)
        elif isinstance(payload, LifecycleChanged) and event.actor == event.system:
            self._engine_restarted(seq, event)

    def _job(self, run_id: str, system: str) -> Job:
        job = self.jobs.get(run_id)
        if job is None:
            job = self.jobs[run_id] = Job(run_id, system)
            while len(self.jobs) > self.max_jobs:
                self.jobs.popitem(last=False)
        return job

    def _accepted(self, seq: int, event: FeedEvent, payload: CommandHandled) -> None:
        if payload.verb != "trigger" or not payload.run_id or payload.outcome != "accepted":
            return
        job = self._job(payload.run_id, payload.target)
        job.actor = event.actor
        job.accepted = event.time
        job.command_id = payload.command_id
        job.correlation_id = job.correlation_id or event.correlation_id
        job.seq = max(job.seq, seq)

    def _completed(self, seq: int, event: FeedEvent, payload: CycleCompleted) -> None:
        if not payload.manual:
            return  # a scheduled cycle: no one is waiting for it
        job = self._job(payload.run_id, event.system)
        job.actor = job.actor or event.actor
        job.correlation_id = job.correlation_id or event.correlation_id
        job.finished = event.time
        try:
            began = datetime.fromisoformat(event.time) - timedelta(milliseconds=payload.duration_ms)
            job.started = iso(began)
        except ValueError:
            job.started = job.started or job.accepted
        job.status = "succeeded" if payload.ok else "failed"
        job.error = None if payload.ok else (payload.detail or payload.result or "failed")
        job.result = {
            "ok": payload.ok,
            "result": payload.result,
            "detail": payload.detail,
            "loop": payload.loop,
            "duration_ms": payload.duration_ms,
            **payload.output,
        }
        job.settled = True
        job.seq = max(job.seq, seq)

    def _engine_restarted(self, seq: int, event: FeedEvent) -> None:
        for job in self.jobs.values():
            if job.system == event.system and job.status == "running" and not job.settled:
                job.status = "failed"
                job.error = LOST
                job.finished = event.time
                job.seq = max(job.seq, seq)

    # --- reads --------------------------------------------------------------------------

    def get(self, run_id: str) -> Job | None:
        return self.jobs.get(run_id)

    def query(self, *, limit: int, system: str | None = None, status: str | None = None) -> list[Job]:
        """Newest first."""
        found: list[Job] = []
        for job in reversed(self.jobs.values()):
            if (system is None or job.system == system) and (status is None or job.status == status):
                found.append(job)
                if len(found) >= limit:
                    break
        return found

    # --- snapshots (small: encoded at once, on the loop) ---------------------------------

    def cut(self) -> Any:
        return _encode((self.applied_seq, list(self.jobs.values())))

    @staticmethod
    def encode(cut: Any) -> Iterator[bytes]:
        yield cut

    def restore(self, frames: Iterator[bytes]) -> None:
        self.applied_seq, jobs = _decode_state(next(frames))
        self.jobs = OrderedDict((job.run_id, job) for job in jobs)


_encode = msgspec.msgpack.Encoder().encode
_decode_state = msgspec.msgpack.Decoder(tuple[int, list[Job]]).decode
