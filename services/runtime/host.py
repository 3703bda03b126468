"""EngineHost: runs one Engine on the bus, by wiring the runtime's parts together.

The host is thin: it builds the parts in ``open()``, takes them down in ``close()``,
and keeps what every part shares (the role, the transition lock, the desired state, the
lease, the publisher). What happens lives beside it, one concern a module:

- the story of a command (``commands.py``): parse it, refuse it, or apply it under the
  transition lock as one event, and answer; keys bound to their request
  (``idempotency.py``), refusals bounded and folded (``refusals.py``), replies and audit
  records built in one place (``replies.py``);
- a standby's commands (``standby.py``): forwarded to the active instance, or recorded
  as the desired state for the next one;
- the instance's tenure (``tenure.py``): the lease (``lease.py``) acquired, lost or
  suspended; activating, fencing, and following the durable desired state;
- control (``control.py``): request/reply on aoc.ctl.<slug>.* and aoc.ctl.all.* as a NATS
  micro service;
- loops (``loops.py``): N concurrent loops, each on its own interval;
- heartbeats (``heartbeat.py``) with the status snapshot and process metrics;
- counters (``counters.py``) resumed from the engine's own last cycle event.

What is left here: the lifecycle moves (``lifecycle.py``: stopped / starting / running /
stopping, each settled change one lifecycle event, which is also the durable desired
state, ``desired.py``, so an engine an operator stopped comes back stopped), cycle
accounting, the engine's events, and the status and detail it shows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar, Unpack

import msgspec
import structlog
from nats.aio.client import Client

from contracts import subjects
from contracts.commands import CommandReply
from contracts.events import (
    CycleCompleted,
    Envelope,
    StatusSnapshot,
    Summary,
    new_event,
    new_id,
)
from contracts.settings import Settings
from contracts.streams import command_ids_bucket
from services.runtime import idempotency
from services.runtime.bus import EventPublisher, barrier, connect, streams_when_ready
from services.runtime.commands import Commands
from services.runtime.context import EngineContext, EventMeta, Fenced
from services.runtime.control import ControlEndpoints, ControlRequest, parse_request
from services.runtime.counters import Counters
from services.runtime.desired import DesiredState
from services.runtime.engine import CycleOutcome, Engine, Loop
from services.runtime.heartbeat import Heartbeats
from services.runtime.lease import Lease, LeaseKeeper, Me
from services.runtime.lifecycle import Lifecycle, State
from services.runtime.loops import LoopRunner
from services.runtime.process import process_metrics
from services.runtime.replies import Replies, lifecycle_record
from services.runtime.standby import Standby
from services.runtime.tenure import ACTIVATING, ACTIVE, STANDBY, Tenure

log = structlog.get_logger()

T = TypeVar("T")
HEARTBEAT_AFTER_CHANGE_S = 0.05  # a beat after a change, once the reply (and the dashboard) are out


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
        self.instance = settings.effective_instance_id
        self.role = STANDBY  # active once it holds the engine's lease (lease.py)
        self.replies = Replies(self.slug, lambda: (self.lifecycle.state, self.desired))
        # held by every settled change: a command's events, a move, a desired state read
        self.transition = asyncio.Lock()
        self.background: set[asyncio.Task[Any]] = set()
        self.activated = asyncio.Event()  # set while this instance is active (cleared when fenced)
        self.opened = asyncio.Event()  # open() has tried the lease: the role says what this instance is
        self.deposed = asyncio.Event()  # set when this instance lost its lease: the process should exit
        self.set_up = False  # Engine.setup ran (on activation): its status extras mean something
        self._shared_set_up = False
        self._forwarded: Any = None
        self.log = log.bind(system=self.slug, instance=self.instance)
        self.commands = Commands(self)  # the story of a command, refusals and audit records
        self.standby = Standby(self)  # a standby's commands: forwarded, or recorded for the next active
        self.tenure = Tenure(self)  # what this instance does as its role changes with the lease
        self.ctx = EngineContext(self)
        engine.ctx = self.ctx

    @property
    def desired(self) -> State:
        return self.desired_state.value if hasattr(self, "desired_state") else State.RUNNING

    # --- process lifetime -----------------------------------------------------------------

    async def open(self) -> None:
        """Connect, answer on the bus, and become the active instance if the lease is free
        (a single instance always is: ``open`` returns with the engine as it should be).
        Otherwise stay a standby that forwards commands and waits for the lease."""
        if self.nc is None:
            self.nc = await connect(self.settings, name=f"aoc-{self.slug}")
        self.js = self.nc.jetstream()
        buckets = await streams_when_ready(self.js, self.settings)
        self.lease = Lease(buckets["leases"], self.slug, Me(self.instance, self.boot_id))
        self.keeper = LeaseKeeper(
            self.lease,
            self.settings.lease_ttl,
            on_acquired=self.tenure.activate,
            on_suspended=self.tenure.suspend,
            on_resumed=self.tenure.resume,
            on_lost=self.tenure.deposed,
            may_resume=self.tenure.nobody_else_acted,
        )
        self.desired_state = DesiredState(self.js, self.slug, autostart=self.settings.autostart)
        self.ledger = idempotency.CommandLedger(
            buckets["commands"], command_ids_bucket(self.settings).bucket, self.slug
        )
        self.publisher = EventPublisher(self.js, deadline=self.settings.publish_deadline)
        self.loops = LoopRunner(
            self.slug, self.engine.loops(), stop_grace=self.settings.stop_grace, on_cycle=self._record_cycle
        )
        self.control = ControlEndpoints(
            self.nc,
            slug=self.slug,
            label=self.engine.info.label,
            schedule=self.engine.info.schedule,
            handler=self.commands.dispatch,
            stats=lambda: {
                "state": str(self.lifecycle.state),
                "desired": str(self.desired),
                "role": self.role,
            },
            instance=self.instance,
        )
        await self.control.start()
        self._forwarded = await self.nc.subscribe(
            subjects.instance(self.slug, self.instance), cb=self.standby.on_forwarded
        )
        self.heartbeats = Heartbeats(
            self.slug,
            self.boot_id,
            self.settings.heartbeat_interval,
            self.snapshot,
            self.publisher,
            instance=self.instance,
            role=lambda: (self.role, self.lease.epoch),
        )
        self.heartbeats.start()

        await self.engine.setup_shared()
        self._shared_set_up = True
        await self.desired_state.load()
        await self.tenure.begin()
        self.opened.set()
        self.keeper.start()
        await barrier(self.nc)  # every endpoint and intake is known to the server once open returns
        self.log.info("engine.opened", state=self.lifecycle.state, desired=self.desired, role=self.role)

    async def close(self) -> None:
        """Process shutdown: stop the loops but leave the desired state as it is, and hand
        the lease over at once."""
        await self.keeper.stop()
        active = self.lease.held
        if active:
            with contextlib.suppress(Exception):
                await self.go(State.STOPPED, reason="process shutting down", actor=self.slug, persist=False)
        await self.loops.stop()  # a standby's shared (``everywhere``) loops too
        if self.tenure.follower is not None:
            await self.tenure.follower.stop()
        await self.stop_heartbeats()
        if active and self.role == ACTIVE:
            # says "clean end" to the next active instance; before the lease is handed over
            with contextlib.suppress(Exception):
                await self.heartbeats.send(final=True)
        with contextlib.suppress(Exception):
            await self.commands.flush_refusals(everything=True)
        if active:
            with contextlib.suppress(Exception):
                await self.lease.release()
        self.role = STANDBY
        for task in list(self.background):
            task.cancel()
        if self.set_up:
            with contextlib.suppress(Exception):
                await self.engine.teardown()
        if self._shared_set_up:
            with contextlib.suppress(Exception):
                await self.engine.teardown_shared()
        with contextlib.suppress(Exception):
            await self.control.stop()
        if self._forwarded is not None:
            with contextlib.suppress(Exception):
                await self._forwarded.unsubscribe()
        if self._owns_nc and self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.drain()

    # --- lifecycle ------------------------------------------------------------------------

    async def go(self, target: State, *, reason: str, actor: str, persist: bool = True) -> bool:
        """Bring the engine to a settled state, its event stored. Returns False when it
        already was there."""
        async with self.transition:
            changed = await self.move(target, reason=reason, actor=actor, persist=persist)
        if changed:
            self.heartbeats.soon()
        return changed

    async def move(
        self,
        target: State,
        *,
        reason: str,
        actor: str,
        desired: State | None = None,
        persist: bool = True,
        request: ControlRequest | None = None,
        message: str | None = None,
    ) -> bool:
        """One settled change, recorded as one lifecycle event (which is also the durable
        desired state and, for a command, its audit). The caller holds ``transition``.

        A start's event is sent before the work and confirmed after it, so the two
        overlap. A stop's is sent once the loops have stopped: "stopped" in the log comes
        after the last record of a cycle that was in flight, never before it. A write that
        fails leaves the engine stopped (the safe side) and raises."""
        settled = self.lifecycle.state
        steps = Lifecycle.plan(settled, target)
        if not steps:
            return False
        wanted = desired or (target if persist else self.desired)
        before = self.desired_state.value
        self.desired_state.value = wanted
        event = self.lifecycle_event(target, settled, reason, actor, request, message)
        stored = (
            None
            if target == State.STOPPED
            else asyncio.ensure_future(self.desired_state.store(event, self.publisher))
        )
        try:
            for step in steps:
                self.lifecycle.move(step)
                if step == State.STOPPING:
                    await self.loops.stop()
                    await self.engine.on_stop()
                elif step == State.RUNNING:
                    self.loops.stopping.clear()
                    await self.engine.on_start()
                    if self.role not in (ACTIVE, ACTIVATING):
                        # fenced meanwhile: the fence acts at once, without the transition
                        # lock, and found nothing started yet; no loop may start after it
                        await self._fall_back_to_stopped()
                        raise Fenced(f"{self.instance} was fenced ({self.role}) while starting")
                    self.loops.start()
        except BaseException:
            if stored is not None:
                with contextlib.suppress(Exception):
                    await stored  # what was sent is stored; the work's own error wins
            raise
        try:
            await (stored or self.desired_state.store(event, self.publisher))
        except BaseException:
            self.desired_state.value = before
            if self.lifecycle.state == State.RUNNING:
                await self._fall_back_to_stopped()
            raise
        # the event already tells every reader; the beat (psutil work on this loop) waits
        # until the command's reply has gone out
        self.heartbeats.soon(after=HEARTBEAT_AFTER_CHANGE_S)
        return True

    async def _fall_back_to_stopped(self) -> None:
        """A start that did not complete (its event could not be stored, or the instance
        was fenced meanwhile) does not keep running: loops, what ``on_start`` set up, and
        the lifecycle all end stopped."""
        with contextlib.suppress(Exception):
            if self.lifecycle.state in (State.STARTING, State.RUNNING):
                self.lifecycle.move(State.STOPPING)
            await self.loops.stop()
            await self.engine.on_stop()
        if self.lifecycle.state == State.STOPPING:
            self.lifecycle.move(State.STOPPED)

    def lifecycle_event(
        self,
        state: State,
        previous: State,
        reason: str,
        actor: str | None,
        request: ControlRequest | None,
        message: str | None,
    ) -> Envelope:
        """The lifecycle event of a change (``replies.lifecycle_record``), not yet stored."""
        payload, summary = lifecycle_record(
            self.engine.info.label, state, previous, self.desired, reason, request, message
        )
        correlation_id = request.correlation_id if request else ""
        return self.new_event(payload, summary, actor=actor, correlation_id=correlation_id)

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
        if not loop.everywhere and not self.keeper.fresh():
            # woke from a freeze past the lease window: the next holder counts from the stream
            self.log.warning("cycle.not_recorded_lease_stale", loop=loop.name, run_id=run_id)
            return
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

    async def publish(self, payload: msgspec.Struct, summary: Summary, **meta: Unpack[EventMeta]) -> Envelope:
        """Publish one event (stream ack, retries). A deterministic ``event_id`` makes a
        re-publish after a crash a duplicate the stream drops (Nats-Msg-Id)."""
        event = self.new_event(payload, summary, **meta)
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
        """An envelope from this engine (actor defaults to the engine), not yet published;
        stamped with this instance and its lease epoch."""
        event = new_event(
            system=self.slug,
            payload=payload,
            summary=summary,
            actor=actor or self.slug,
            correlation_id=correlation_id,
            event_id=event_id,
        )
        event.instance = self.instance
        event.epoch = self.lease.epoch if hasattr(self, "lease") else 0
        return event

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
            extras=self.engine.status_extras() if self.set_up else {},
            role=self.role,
            instance=self.instance,
            cycle_errors=self.counters.errors,
        )

    def detail(self) -> dict[str, Any]:
        detail = {
            "name": self.slug,
            "label": self.engine.info.label,
            "schedule": self.engine.info.schedule,
            **{k: v for k, v in msgspec.to_builtins(self.snapshot()).items() if k != "extras"},
            **(self.engine.status_extras() if self.set_up else {}),
            **(self.engine.detail_extras() if self.set_up else {}),
            "loops": msgspec.to_builtins(self.loops.describe()),
            "process": msgspec.to_builtins(process_metrics()),
            "boot_id": self.boot_id,
            "instance": self.instance,
            "role": self.role,
            "epoch": self.lease.epoch,
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
        return await self.commands.dispatch(parse_request(subject, body, headers, reply_to))

    def spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
