"""EngineHost: runs one Engine on the bus, by wiring the runtime's parts together.

- lifecycle (``lifecycle.py``): stopped / starting / running / stopping, with the desired
  state kept in KV (``desired.py``), so an engine an operator stopped comes back stopped;
- loops (``loops.py``): N concurrent loops, each on its own interval;
- control (``control.py``): request/reply on aoc.ctl.<slug>.* and aoc.ctl.all.* as a NATS
  micro service; command ids de-duplicated (``dedup.py``); every mutating or refused
  command audited; replies built in one place (``replies.py``);
- heartbeats (``heartbeat.py``) with the status snapshot and process metrics;
- counters (``counters.py``) resumed from the engine's own last cycle event.

What is left here is the story of a command: parse it, refuse it, or apply it under
the transition lock with its writes in one batch, and answer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import msgspec
import structlog
from nats.aio.client import Client

from contracts.commands import CommandReply
from contracts.events import (
    CycleCompleted,
    Envelope,
    LifecycleChanged,
    StatusSnapshot,
    Summary,
    new_event,
    new_id,
)
from contracts.settings import Settings
from contracts.streams import desired_state_bucket, ensure_all
from services.runtime.bus import EventPublisher, WriteBatch, barrier, connect
from services.runtime.control import ControlEndpoints, ControlRequest, parse_request
from services.runtime.counters import Counters, resume_counters
from services.runtime.dedup import CommandIds
from services.runtime.desired import DesiredState
from services.runtime.engine import CycleOutcome, Engine, Loop
from services.runtime.heartbeat import Heartbeats
from services.runtime.lifecycle import Lifecycle, State
from services.runtime.loops import LoopRunner
from services.runtime.process import process_metrics
from services.runtime.replies import Replies, command_record, outcome_of

log = structlog.get_logger()

T = TypeVar("T")


class EngineHost:
    def __init__(self, engine: Engine, settings: Settings, *, nc: Client | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.slug = engine.slug
        self.nc: Client | None = nc
        self._owns_nc = nc is None
        self.lifecycle = Lifecycle()
        self.counters = Counters()
        self.boot_id = new_id()
        self.replies = Replies(self.slug, lambda: (self.lifecycle.state, self.desired))
        self._transition = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()
        self.log = log.bind(system=self.slug)
        engine.host = self

    @property
    def desired(self) -> State:
        return self._desired.value if hasattr(self, "_desired") else State.RUNNING

    # --- process lifetime -----------------------------------------------------------------

    async def open(self) -> None:
        if self.nc is None:
            self.nc = await connect(self.settings, name=f"aoc-{self.slug}")
        self.js = self.nc.jetstream()
        buckets = await ensure_all(self.js, self.settings)
        self._desired = DesiredState(
            buckets["desired"],
            desired_state_bucket(self.settings).bucket,
            self.slug,
            autostart=self.settings.autostart,
        )
        self.command_ids = CommandIds(buckets["commands"], self.slug, self.replies)
        self.publisher = EventPublisher(self.js, deadline=self.settings.publish_deadline)
        self.counters = await resume_counters(self.js, self.slug)
        self.loops = LoopRunner(
            self.slug, self.engine.loops(), stop_grace=self.settings.stop_grace, on_cycle=self._record_cycle
        )
        await self.engine.setup()
        self.control = ControlEndpoints(
            self.nc,
            slug=self.slug,
            label=self.engine.info.label,
            schedule=self.engine.info.schedule,
            handler=self._dispatch,
            stats=lambda: {"state": str(self.lifecycle.state), "desired": str(self.desired)},
        )
        await self.control.start()
        self.heartbeats = Heartbeats(
            self.slug, self.boot_id, self.settings.heartbeat_interval, self.snapshot, self.publisher
        )
        self.heartbeats.start()

        if await self._desired.load() == State.RUNNING:
            await self._go(State.RUNNING, reason="process started", actor=self.slug)
        else:
            # say so, so the dashboard shows an acknowledged stop rather than nothing
            await self._publish_lifecycle(State.STOPPED, State.STOPPED, "restored desired state: stopped")
            await self.heartbeats.send()
        await barrier(self.nc)  # every endpoint and intake is known to the server once open returns
        self.log.info("engine.opened", state=self.lifecycle.state, desired=self.desired)

    async def close(self) -> None:
        """Process shutdown: stop the loops but leave the desired state as it is."""
        with contextlib.suppress(Exception):
            await self._go(State.STOPPED, reason="process shutting down", actor=self.slug, persist=False)
        await self.stop_heartbeats()
        for task in list(self._background):
            task.cancel()
        with contextlib.suppress(Exception):
            await self.engine.teardown()
        with contextlib.suppress(Exception):
            await self.control.stop()
        if self._owns_nc and self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.drain()

    # --- lifecycle ------------------------------------------------------------------------

    async def _go(self, target: State, *, reason: str, actor: str, persist: bool = True) -> bool:
        """Bring the engine to a settled state, its writes stored. Returns False when it
        already was there."""
        async with self._transaction() as batch:
            changed = await self._move(target, batch, reason=reason, actor=actor, persist=persist)
        if changed:
            self.heartbeats.soon()
        return changed

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[WriteBatch]:
        """A state change's writes: sent in one batch under the transition lock and
        confirmed before it is released, also when the work failed (what was sent is
        then still stored; the work's own error wins)."""
        async with self._transition:
            batch = self.publisher.batch()
            try:
                yield batch
            except BaseException:
                with contextlib.suppress(Exception):
                    await batch.confirmed()
                raise
            await batch.confirmed()

    async def _move(
        self,
        target: State,
        batch: WriteBatch,
        *,
        reason: str,
        actor: str,
        command_id: str | None = None,
        correlation_id: str = "",
        persist: bool = True,
    ) -> bool:
        """The transition itself; the caller holds ``_transition`` and confirms ``batch``."""
        if persist and self.desired != target:
            await self._desired.record(target, batch, actor=actor, reason=reason, command_id=command_id)
        settled = self.lifecycle.state
        steps = Lifecycle.plan(settled, target)
        for step in steps:
            self.lifecycle.move(step)
            if step == State.STOPPING:
                await self.loops.stop()
                await self.engine.on_stop()
            elif step == State.RUNNING:
                self.loops.stopping.clear()
                await self.engine.on_start()
                self.loops.start()
        if steps:
            # one event per settled change (the transient states ride on heartbeats):
            # fewer fsynced writes on the emergency-stop path
            await self._publish_lifecycle(target, settled, reason, actor, command_id, correlation_id, batch)
        return bool(steps)

    async def _publish_lifecycle(
        self,
        state: State,
        previous: State,
        reason: str,
        actor: str | None = None,
        command_id: str | None = None,
        correlation_id: str = "",
        batch: WriteBatch | None = None,
    ) -> None:
        detail = f"{self.engine.info.label} {state}"
        if reason:
            detail += f" — {reason}"
        event = self.new_event(
            LifecycleChanged(
                state=state, previous=previous, desired=self.desired, reason=reason, command_id=command_id
            ),
            Summary(action=f"engine_{state}", detail=detail, result="success"),
            actor=actor,
            correlation_id=correlation_id,
        )
        await (batch or self.publisher).publish(event)

    # --- loops and cycles -----------------------------------------------------------------

    async def until_stopping(self, idle_wait: Awaitable[T]) -> T:
        """See ``LoopRunner.until_stopping``: an idle wait a stop may abandon."""
        return await self.loops.until_stopping(idle_wait)

    async def run_cycle(
        self,
        loop: Loop,
        *,
        run: Any = None,
        run_id: str | None = None,
        actor: str | None = None,
        correlation_id: str = "",
    ) -> CycleOutcome:
        """Run one cycle (``run`` overrides the loop's cycle, for triggers), count it, record it."""
        known = self.loops.find(loop.name) or loop
        return await self.loops.run_cycle(
            known, run=run, run_id=run_id, actor=actor, correlation_id=correlation_id
        )

    async def _record_cycle(
        self,
        loop: Loop,
        outcome: CycleOutcome,
        run_id: str,
        duration_ms: float,
        finished: Any,
        actor: str | None,
        correlation_id: str,
    ) -> None:
        self.counters.count(outcome.ok, finished)
        if not (outcome.quiet and outcome.ok and actor is None):
            payload = CycleCompleted(
                loop=loop.name,
                run_id=run_id,
                ok=outcome.ok,
                result=outcome.result,
                detail=outcome.detail,
                duration_ms=duration_ms,
                manual=actor is not None,
                output=outcome.output,
                total_runs=self.counters.total_runs,
                error_count=self.counters.errors,
                last_run=finished,
            )
            summary = Summary(
                action=outcome.action or f"{loop.name}_cycle", detail=outcome.detail, result=outcome.result
            )
            await self.publish(payload, summary, actor=actor or self.slug, correlation_id=correlation_id)
        self.heartbeats.soon()

    # --- events ---------------------------------------------------------------------------

    async def publish(
        self,
        payload: msgspec.Struct,
        summary: Summary,
        *,
        actor: str | None = None,
        correlation_id: str = "",
        event_id: str | None = None,
    ) -> Envelope:
        """Publish one event (stream ack, retries). A deterministic ``event_id`` makes a
        re-publish after a crash a duplicate the stream drops (Nats-Msg-Id)."""
        event = self.new_event(
            payload, summary, actor=actor, correlation_id=correlation_id, event_id=event_id
        )
        await self.publisher.publish(event)
        return event

    def new_event(
        self,
        payload: msgspec.Struct,
        summary: Summary,
        *,
        actor: str | None = None,
        correlation_id: str = "",
        event_id: str | None = None,
    ) -> Envelope:
        """An envelope from this engine (actor defaults to the engine), not yet published."""
        return new_event(
            system=self.slug,
            payload=payload,
            summary=summary,
            actor=actor or self.slug,
            correlation_id=correlation_id,
            event_id=event_id,
        )

    # --- what the engine says about itself ----------------------------------------------

    def snapshot(self) -> StatusSnapshot:
        state = self.lifecycle.state
        return StatusSnapshot(
            state=state,
            desired=self.desired,
            running=state == State.RUNNING,
            last_run=self.counters.last_run,
            error_count=self.engine.error_count(self.counters.errors),
            success_rate=self.counters.success_rate,
            total_runs=self.counters.total_runs,
            extras=self.engine.status_extras(),
        )

    def detail(self) -> dict[str, Any]:
        detail = {
            "name": self.slug,
            "label": self.engine.info.label,
            "schedule": self.engine.info.schedule,
            **{k: v for k, v in msgspec.to_builtins(self.snapshot()).items() if k != "extras"},
            **self.engine.status_extras(),
            **self.engine.detail_extras(),
            "loops": msgspec.to_builtins(self.loops.describe()),
            "process": msgspec.to_builtins(process_metrics()),
            "boot_id": self.boot_id,
        }
        return msgspec.to_builtins(detail)

    async def send_heartbeat(self) -> None:
        await self.heartbeats.send()

    async def stop_heartbeats(self) -> None:
        """No more heartbeats from this process (shutdown; tests freezing the view)."""
        if hasattr(self, "heartbeats"):
            await self.heartbeats.stop()

    # --- commands -------------------------------------------------------------------------

    async def handle(
        self, subject: str, body: bytes, headers: dict[str, str], *, reply_to: str | None = None
    ) -> CommandReply:
        """Handle one control message and return the reply (also audited when it
        changes or is refused)."""
        return await self._dispatch(parse_request(subject, body, headers, reply_to))

    async def _dispatch(self, request: ControlRequest) -> CommandReply:
        if request.refusal is not None:
            return await self._refuse(request)
        sender_id = request.command.command_id or ""
        if request.verb == "status":
            return self.replies.make(
                "status", "status", command_id=sender_id, result=msgspec.to_builtins(self.snapshot())
            )
        if request.verb == "detail":
            return self.replies.make("detail", "detail", command_id=sender_id, result=self.detail())
        with structlog.contextvars.bound_contextvars(correlation_id=request.correlation_id):
            self.log.info(
                "command.received",
                verb=request.verb,
                subject=request.subject,
                actor=request.actor,
                command_id=request.command_id,
            )
            return await self._mutate(request)

    async def _mutate(self, request: ControlRequest) -> CommandReply:
        if request.command.command_id:
            seen = await self.command_ids.seen_before(request.command_id)
            if seen is not None:
                await self._audit(request, "duplicate", seen.message)
                return seen

        if request.verb == "trigger":
            reply = await self._attempt(request, self._trigger(request))
            await self._audit(request, outcome_of(reply), reply.message)
            return reply
        # A state change, its desired state, lifecycle event and audit go out in one batch
        # (one round trip), all under the transition lock, so the next command's events
        # are stored after these.
        async with self._transaction() as batch:
            reply = await self._attempt(request, self._change_state(request, batch))
            await self._audit(request, outcome_of(reply), reply.message, batch)
            if reply.changed:
                self.heartbeats.soon()  # its psutil work overlaps the wait for the acks
        return reply

    async def _attempt(self, request: ControlRequest, work: Awaitable[CommandReply]) -> CommandReply:
        try:
            reply = await work
        except Exception as exc:
            self.log.exception("command.failed", verb=request.verb)
            reply = self.replies.make(
                request.verb,
                f"{request.verb} failed: {exc}",
                command_id=request.command_id,
                ok=False,
                error="internal",
            )
        self.command_ids.remember(request.command_id, reply)
        return reply

    async def _change_state(self, request: ControlRequest, batch: WriteBatch) -> CommandReply:
        label = self.engine.info.label
        verb = request.verb
        reason = request.command.reason or f"{verb} by {request.actor}"
        move = {
            "reason": reason,
            "actor": request.actor,
            "command_id": request.command_id,
            "correlation_id": request.correlation_id,
        }
        if verb == "stop":
            changed = await self._move(State.STOPPED, batch, **move)
            message = f"{label} stopped" if changed else f"{label} was already stopped"
        elif verb == "start":
            changed = await self._move(State.RUNNING, batch, **move)
            message = f"{label} started" if changed else f"{label} was already running"
        elif request.unless_stopped and self.desired == State.STOPPED:
            # heal-check's restart: an operator's stop since it looked wins over the healer
            changed, message = False, f"{label} was stopped by an operator; not restarting it"
        else:  # restart: persist "running" once, so a crash mid-restart comes back running
            await self._desired.record(
                State.RUNNING, batch, actor=request.actor, reason=reason, command_id=request.command_id
            )
            await self._move(State.STOPPED, batch, **move, persist=False)
            await batch.confirmed()  # "stopped" is stored before "running" is sent
            await self._move(State.RUNNING, batch, **move)
            changed, message = True, f"{label} restarted"
        return self.replies.make(verb, message, command_id=request.command_id, changed=changed)

    async def _trigger(self, request: ControlRequest) -> CommandReply:
        label = self.engine.info.label
        if self.lifecycle.state != State.RUNNING:
            return self.replies.refused(
                request, "not_running", f"{label} is {self.lifecycle.state}; start it before triggering"
            )
        run_id = new_id()
        args = request.command.args
        task = asyncio.create_task(
            self.run_cycle(
                self.engine.primary_loop(),
                run=lambda: self.engine.trigger(args),
                run_id=run_id,
                actor=request.actor,
                correlation_id=request.correlation_id,
            )
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        done, _ = await asyncio.wait({task}, timeout=self.settings.reply_budget)
        if not done:
            return self.replies.make(
                "trigger",
                f"{label} cycle started; its result arrives as a cycle_completed event",
                command_id=request.command_id,
                changed=True,
                status="started",
                run_id=run_id,
            )
        outcome = task.result()
        return self.replies.make(
            "trigger",
            outcome.detail or f"{label} cycle completed",
            command_id=request.command_id,
            changed=True,
            run_id=run_id,
            result={"ok": outcome.ok, "result": outcome.result, **outcome.output},
        )

    async def _refuse(self, request: ControlRequest) -> CommandReply:
        refusal = request.refusal
        assert refusal is not None
        self.log.warning(
            "command.rejected", subject=request.subject, error=refusal.error, message=refusal.message
        )
        await self._audit(request, "rejected", refusal.message)
        return self.replies.refused(request, refusal.error, refusal.message)

    async def _audit(
        self, request: ControlRequest, outcome: str, message: str, batch: WriteBatch | None = None
    ) -> None:
        payload, summary = command_record(request, self.slug, outcome, message)
        event = self.new_event(payload, summary, actor=request.actor, correlation_id=request.correlation_id)
        await (batch or self.publisher).publish(event)
