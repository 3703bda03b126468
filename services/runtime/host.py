"""EngineHost: runs one Engine on the bus.

- lifecycle (stopped / starting / running / stopping) with the desired state kept in
  KV, so an engine an operator stopped comes back stopped after a crash;
- N concurrent loops, each on its own interval;
- control request/reply on aoc.ctl.<slug>.* and aoc.ctl.all.*, registered as a NATS
  micro service (``$SRV`` discovery, ping, stats); on the secure server a human NATS
  user sends aoc.ctl.<slug>.<verb>.<user> and is recorded as ``nats:<user>``;
- command ids de-duplicated in KV, every mutating or rejected command audited;
- heartbeats with the status snapshot and process metrics;
- counters (total runs, errors, success rate, last run) resumed from the engine's
  own last cycle event.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable
from datetime import datetime
from typing import Any, TypeVar

import msgspec
import structlog
from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import EndpointStats, Service

from contracts import subjects
from contracts.commands import (
    VERBS,
    Command,
    CommandError,
    CommandReply,
    decode_command,
)
from contracts.events import (
    CommandHandled,
    CycleCompleted,
    Envelope,
    Heartbeat,
    LifecycleChanged,
    StatusSnapshot,
    Summary,
    encode,
    envelope_decoder,
    new_event,
    new_id,
    utcnow,
)
from contracts.settings import Settings
from contracts.streams import desired_state_bucket, ensure_all
from services.runtime.bus import EventPublisher, WriteBatch, barrier, connect
from services.runtime.engine import CycleOutcome, Engine, Loop, StopRequested
from services.runtime.lifecycle import Lifecycle, State
from services.runtime.process import process_metrics

log = structlog.get_logger()

T = TypeVar("T")
STUCK_LOOP_S = 5.0  # how long a cancelled loop may take to end before the stop goes on without it

ANONYMOUS_NATS = "nats:anonymous"
VERSION = "0.1.0"


class Counters(msgspec.Struct):
    total_runs: int = 0
    errors: int = 0
    last_run: datetime | None = None

    @property
    def success_rate(self) -> float:
        if self.total_runs == 0:
            return 100.0
        return round((self.total_runs - self.errors) / self.total_runs * 100, 2)


class EngineHost:
    def __init__(self, engine: Engine, settings: Settings, *, nc: Client | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.slug = engine.slug
        self.nc: Client | None = nc
        self._owns_nc = nc is None
        self.lifecycle = Lifecycle()
        self.desired = State.RUNNING
        self.counters = Counters()
        self.boot_id = new_id()
        self._beat_seq = 0
        self._loops: list[Loop] = []
        self._loop_tasks: dict[str, asyncio.Task[None]] = {}
        self._cycle_locks: dict[str, asyncio.Lock] = {}
        self._loop_last_run: dict[str, datetime] = {}
        self._transition = asyncio.Lock()
        self._stopping = asyncio.Event()  # set from the moment a stop begins until a start
        self._replies: OrderedDict[str, CommandReply] = OrderedDict()
        self._background: set[asyncio.Task[Any]] = set()
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._beat_wakeup = asyncio.Event()
        self._closing = False
        self._service: Service | None = None
        self.log = log.bind(system=self.slug)
        engine.host = self

    # --- process lifetime -----------------------------------------------------------------

    async def open(self) -> None:
        if self.nc is None:
            self.nc = await connect(self.settings, name=f"aoc-{self.slug}")
        self.js = self.nc.jetstream()
        buckets = await ensure_all(self.js, self.settings)
        self._desired_kv = buckets["desired"]
        self._desired_subject = f"$KV.{desired_state_bucket(self.settings).bucket}.{self.slug}"
        self._commands_kv = buckets["commands"]
        self.publisher = EventPublisher(self.js, deadline=self.settings.publish_deadline)
        await self._resume_counters()
        self._loops = self.engine.loops()
        self._cycle_locks = {loop.name: asyncio.Lock() for loop in self._loops}
        await self.engine.setup()
        await self._register_service()
        self._heartbeat_task = asyncio.create_task(self._heartbeat_loop(), name=f"{self.slug}-heartbeat")

        self.desired = await self._read_desired()
        if self.desired == State.RUNNING:
            await self._go(State.RUNNING, reason="process started", actor=self.slug)
        else:
            # say so, so the dashboard shows an acknowledged stop rather than nothing
            await self._publish_lifecycle(State.STOPPED, State.STOPPED, "restored desired state: stopped")
            await self.send_heartbeat()
        await barrier(self.nc)  # every endpoint and intake is known to the server once open returns
        self.log.info("engine.opened", state=self.lifecycle.state, desired=self.desired)

    async def close(self) -> None:
        """Process shutdown: stop the loops but leave the desired state as it is."""
        self._closing = True
        with contextlib.suppress(Exception):
            await self._go(State.STOPPED, reason="process shutting down", actor=self.slug, persist=False)
        await self.stop_heartbeats()
        for task in list(self._background):
            task.cancel()
        with contextlib.suppress(Exception):
            await self.engine.teardown()
        if self._service:
            with contextlib.suppress(Exception):
                await self._service.stop()
        if self._owns_nc and self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.drain()

    async def _resume_counters(self) -> None:
        try:
            raw = await self.js.get_last_msg(
                subjects.EVENTS_STREAM, subjects.evt(self.slug, CycleCompleted.TYPE)
            )
        except NotFoundError:
            return
        last = envelope_decoder.decode(raw.data).payload()
        self.counters = Counters(last.total_runs, last.error_count, last.last_run)

    async def _read_desired(self) -> State:
        try:
            entry = await self._desired_kv.get(self.slug)
        except KeyNotFoundError:
            return State.RUNNING if self.settings.autostart else State.STOPPED
        value = msgspec.json.decode(entry.value or b"{}")
        return State(value.get("desired", State.RUNNING))

    async def _write_desired(
        self, desired: State, actor: str, reason: str, command_id: str | None, batch: WriteBatch
    ) -> None:
        self.desired = desired
        record = {"desired": desired, "actor": actor, "reason": reason, "command_id": command_id}
        record["time"] = utcnow().isoformat()
        # a KV put is a publish to $KV.<bucket>.<key>; sent in the batch, it shares its round trip
        await batch.send(self._desired_subject, msgspec.json.encode(record))

    # --- lifecycle ------------------------------------------------------------------------

    async def _go(
        self,
        target: State,
        *,
        reason: str,
        actor: str,
        command_id: str | None = None,
        correlation_id: str = "",
        persist: bool = True,
    ) -> bool:
        """Bring the engine to a settled state, its writes stored. Returns False when it
        already was there."""
        async with self._transaction() as batch:
            changed = await self._move(
                target,
                batch,
                reason=reason,
                actor=actor,
                command_id=command_id,
                correlation_id=correlation_id,
                persist=persist,
            )
        if changed:
            self._beat_soon()
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
            await self._write_desired(target, actor, reason, command_id, batch)
        settled = self.lifecycle.state
        steps = Lifecycle.plan(settled, target)
        for step in steps:
            self.lifecycle.move(step)
            if step == State.STOPPING:
                self._stopping.set()
                await self._stop_loops()
                await self.engine.on_stop()
            elif step == State.RUNNING:
                self._stopping.clear()
                await self.engine.on_start()
                self._start_loops()
        if steps:
            # one event per settled change (the transient states ride on heartbeats):
            # fewer fsynced writes on the emergency-stop path
            await self._publish_lifecycle(target, settled, reason, actor, command_id, correlation_id, batch)
        return bool(steps)

    def _start_loops(self) -> None:
        for loop in self._loops:
            self._loop_tasks[loop.name] = asyncio.create_task(
                self._run_loop(loop), name=f"{self.slug}-{loop.name}"
            )

    async def _stop_loops(self) -> None:
        tasks = list(self._loop_tasks.values())
        busy = [self._cycle_locks[name] for name in self._loop_tasks if self._cycle_locks[name].locked()]
        self._loop_tasks.clear()
        # A loop asleep between cycles stops at once; one mid-cycle may finish that cycle
        # within stop_grace. Wait for the cycle (take its lock), not for the loop task:
        # that never ends by itself, so waiting on it always cost the whole grace. Holding
        # the lock keeps the loop from starting another cycle before it is cancelled.
        held: list[asyncio.Lock] = []

        async def hold(lock: asyncio.Lock) -> None:
            await lock.acquire()
            held.append(lock)

        if busy:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.stop_grace):
                    await asyncio.gather(*(hold(lock) for lock in busy))
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=STUCK_LOOP_S)
            for task in stuck:  # a cycle swallowed its cancel: say so loudly, do not hang the stop
                self.log.error("loop.ignored_cancel", loop=task.get_name())
        for lock in held:
            lock.release()

    async def until_stopping(self, idle_wait: Awaitable[T]) -> T:
        """Await an idle wait of a cycle (a long-poll with nothing in hand) but give up,
        raising StopRequested, as soon as a stop begins: the stop then need not wait for
        the poll to time out. Only for waits that are safe to abandon: a pull whose
        messages arrive after it was abandoned stays in the subscription for the next
        pull, or is redelivered by JetStream (never acked, never lost)."""
        wait = asyncio.ensure_future(idle_wait)
        if self._stopping.is_set():
            wait.cancel()
            raise StopRequested
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({wait, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not wait.done():
                # Cancel, but do not await it here: awaiting inside a suppress would also
                # swallow a cancel of *this* task, and a loop that ignores its cancel never
                # stops. The abandoned wait winds down on its own.
                wait.cancel()
                wait.add_done_callback(_retrieve)
        if not wait.done() or wait.cancelled():
            raise StopRequested
        return wait.result()

    async def _run_loop(self, loop: Loop) -> None:
        me = asyncio.current_task()
        # Ends when cancelled, and also once a stop has dropped it from _loop_tasks: a cancel
        # can be swallowed inside a cycle (nats-py's fetch may turn one into a TimeoutError),
        # and a loop that carried on would keep the stop waiting.
        while self._loop_tasks.get(loop.name) is me:
            try:
                await self.run_cycle(loop)
            except asyncio.CancelledError:
                raise
            except Exception:  # the cycle itself never raises; this is publishing failing
                self.log.exception("loop.cycle_not_recorded", loop=loop.name)
            await asyncio.sleep(loop.interval)

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
        run_id = run_id or new_id()
        async with self._cycle_locks[loop.name]:
            started = time.perf_counter()
            try:
                outcome = await (run or loop.cycle)()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log.exception("cycle.failed", loop=loop.name)
                outcome = CycleOutcome(ok=False, result="failed", detail=f"{type(exc).__name__}: {exc}")
            duration_ms = round((time.perf_counter() - started) * 1000, 2)
            now = utcnow()
            self.counters.total_runs += 1
            self.counters.errors += 0 if outcome.ok else 1
            self.counters.last_run = now
            self._loop_last_run[loop.name] = now
            if outcome.quiet and outcome.ok and actor is None:
                return outcome
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
                last_run=now,
            )
            summary = Summary(
                action=outcome.action or f"{loop.name}_cycle", detail=outcome.detail, result=outcome.result
            )
            await self.publish(payload, summary, actor=actor or self.slug, correlation_id=correlation_id)
        self._beat_soon()
        return outcome

    # --- events and heartbeats ----------------------------------------------------------

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

    async def send_heartbeat(self) -> None:
        self._beat_seq += 1
        beat = Heartbeat(
            system=self.slug,
            boot_id=self.boot_id,
            seq=self._beat_seq,
            time=utcnow(),
            status=self.snapshot(),
            process=process_metrics(),
            interval_s=self.settings.heartbeat_interval,
        )
        await self.publisher.heartbeat(beat)

    async def stop_heartbeats(self) -> None:
        """No more heartbeats from this process (shutdown; tests freezing the view)."""
        self._closing = True
        if self._heartbeat_task:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task

    def _beat_soon(self) -> None:
        self._beat_wakeup.set()

    async def _heartbeat_loop(self) -> None:
        while not self._closing:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.heartbeat_interval):
                    await self._beat_wakeup.wait()
            self._beat_wakeup.clear()
            try:
                await self.send_heartbeat()
            except Exception:
                self.log.exception("heartbeat.failed")

    # --- control --------------------------------------------------------------------------

    async def _register_service(self) -> None:
        assert self.nc is not None
        self._service = await add_service(
            self.nc,
            name=f"aoc-{self.slug}",
            version=VERSION,
            description=self.engine.info.label,
            # which process this is: the health probe finds its own instance by these
            metadata={
                "system": self.slug,
                "schedule": self.engine.info.schedule,
                "instance": str(self.settings.instance_id),
                "host": socket.gethostname(),
                "pid": str(os.getpid()),
            },
            # one queue group per engine: scaled-out instances of one engine share
            # a command, while every engine still receives aoc.ctl.all.*
            queue_group=f"aoc-{self.slug}",
            stats_handler=self._endpoint_stats,
        )
        await self._service.add_endpoint(
            name="control", subject=subjects.ctl_wildcard(self.slug), handler=self._on_request
        )
        await self._service.add_endpoint(
            name="broadcast", subject=subjects.ctl_wildcard("all"), handler=self._on_request
        )
        # human NATS users: the fifth token is their user name, vouched for by the server
        await self._service.add_endpoint(
            name="operator", subject=subjects.ctl_user_wildcard(self.slug), handler=self._on_request
        )
        await self._service.add_endpoint(
            name="operator-broadcast", subject=subjects.ctl_user_wildcard("all"), handler=self._on_request
        )

    def _endpoint_stats(self, _endpoint: EndpointStats) -> dict[str, Any]:
        # natscli wants `data` to be an object (NATS-NOTES.md)
        return {"state": str(self.lifecycle.state), "desired": str(self.desired)}

    async def _on_request(self, request: Request) -> None:
        parsed = subjects.parse_ctl(request.subject)
        if parsed is not None and parsed[1] == "trigger":
            # a trigger may work up to the reply budget: never hold up a stop behind it
            task = asyncio.create_task(self._serve(request))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        else:
            await self._serve(request)

    async def _serve(self, request: Request) -> None:
        reply_to = request._msg.reply  # nats.micro exposes no public reply subject
        reply = await self.handle(request.subject, request.data, request.headers or {}, reply_to=reply_to)
        await self._respond(request, reply)

    async def _respond(self, request: Request, reply: CommandReply) -> None:
        try:
            if reply.ok:
                await request.respond(encode(reply))
            else:
                await request.respond_error(reply.error or "error", reply.message, data=encode(reply))
        except ValueError:
            pass  # `nats pub` sends no reply subject: the audit event is the answer

    async def handle(
        self, subject: str, body: bytes, headers: dict[str, str], *, reply_to: str | None = None
    ) -> CommandReply:
        """Handle one control message and return the reply (also audited when it
        changes or is refused)."""
        parsed = subjects.parse_ctl(subject)
        verb = parsed[1] if parsed else subject.rsplit(".", 1)[-1]
        origin = "all" if subject.startswith(subjects.ctl("all", "")) else "nats"
        origin = headers.get("Aoc-Origin", origin)
        # nats-server does not check a push consumer's deliver subject against its
        # creator's permissions (nats-server#8274): a stored message redelivered here
        # keeps its stored subject or carries a $JS.ACK reply. Neither is a command.
        if parsed is None or (reply_to or "").startswith("$JS.ACK."):
            message = f"{subject} delivered by JetStream is not a control command"
            return await self._reject(verb, subject, "not_a_command", message, Command(), origin)
        # a fifth token is the sender's NATS user, which the secure server vouched for
        nats_user = subject.split(".")[4] if subject.count(".") == 4 else None
        try:
            command = decode_command(body)
        except CommandError as exc:
            sender = Command(actor=f"nats:{nats_user}") if nats_user else Command()
            return await self._reject(verb, subject, "invalid_command", str(exc), sender, origin)
        if nats_user is not None:
            command = msgspec.structs.replace(command, actor=f"nats:{nats_user}")
        if verb not in VERBS:
            message = f"unknown verb {verb!r}; expected one of {', '.join(VERBS)}"
            return await self._reject(verb, subject, "unknown_verb", message, command, origin)

        if verb == "status":
            return self._reply(verb, command, "status", result=msgspec.to_builtins(self.snapshot()))
        if verb == "detail":
            return self._reply(verb, command, "detail", result=self.detail())

        command_id = command.command_id or new_id()
        actor = command.actor or headers.get("Aoc-Actor") or ANONYMOUS_NATS
        correlation_id = command.correlation_id or headers.get("X-Correlation-ID") or command_id
        ctx = _Context(verb, subject, origin, command_id, actor, correlation_id, command.reason)
        ctx.unless_stopped = verb == "restart" and command.args.get("unless_stopped") is True
        with structlog.contextvars.bound_contextvars(correlation_id=correlation_id):
            self.log.info("command.received", verb=verb, subject=subject, actor=actor, command_id=command_id)
            return await self._handle_mutation(ctx, command)

    async def _handle_mutation(self, ctx: _Context, command: Command) -> CommandReply:
        verb = ctx.verb
        if command.command_id:
            seen = await self._seen_before(command.command_id)
            if seen is not None:
                await self._audit(ctx, "duplicate", seen.message)
                return seen

        if verb == "trigger":
            reply = await self._attempt(ctx, command, self._trigger(ctx, command.args))
            await self._audit(ctx, self._outcome(reply), reply.message)
            return reply
        # A state change, its desired state, lifecycle event and audit go out in one batch
        # (one round trip), all under the transition lock, so the next command's events
        # are stored after these.
        async with self._transaction() as batch:
            reply = await self._attempt(ctx, command, self._change_state(ctx, batch))
            await self._audit(ctx, self._outcome(reply), reply.message, batch)
            if reply.changed:
                self._beat_soon()  # its psutil work overlaps the wait for the acks
        return reply

    async def _attempt(self, ctx: _Context, command: Command, work: Awaitable[CommandReply]) -> CommandReply:
        try:
            reply = await work
        except Exception as exc:
            self.log.exception("command.failed", verb=ctx.verb)
            reply = self._reply(ctx.verb, command, f"{ctx.verb} failed: {exc}", ok=False, error="internal")
            reply.command_id = ctx.command_id
        self._remember(ctx.command_id, reply)
        return reply

    @staticmethod
    def _outcome(reply: CommandReply) -> str:
        return "accepted" if reply.ok and reply.changed else ("noop" if reply.ok else "failed")

    async def _change_state(self, ctx: _Context, batch: WriteBatch) -> CommandReply:
        label = self.engine.info.label
        kwargs = {
            "reason": ctx.reason or f"{ctx.verb} by {ctx.actor}",
            "actor": ctx.actor,
            "command_id": ctx.command_id,
            "correlation_id": ctx.correlation_id,
        }
        if ctx.verb == "stop":
            changed = await self._move(State.STOPPED, batch, **kwargs)
            message = f"{label} stopped" if changed else f"{label} was already stopped"
        elif ctx.verb == "start":
            changed = await self._move(State.RUNNING, batch, **kwargs)
            message = f"{label} started" if changed else f"{label} was already running"
        elif ctx.unless_stopped and self.desired == State.STOPPED:
            # heal-check's restart: an operator's stop since it looked wins over the healer
            changed, message = False, f"{label} was stopped by an operator; not restarting it"
        else:  # restart: persist "running" once, so a crash mid-restart comes back running
            await self._write_desired(State.RUNNING, ctx.actor, kwargs["reason"], ctx.command_id, batch)
            await self._move(State.STOPPED, batch, **kwargs, persist=False)
            await batch.confirmed()  # "stopped" is stored before "running" is sent
            await self._move(State.RUNNING, batch, **kwargs)
            changed, message = True, f"{label} restarted"
        return CommandReply(
            ok=True,
            system=self.slug,
            verb=ctx.verb,
            message=message,
            command_id=ctx.command_id,
            state=self.lifecycle.state,
            desired=self.desired,
            changed=changed,
        )

    async def _trigger(self, ctx: _Context, args: dict[str, Any]) -> CommandReply:
        if self.lifecycle.state != State.RUNNING:
            reply = CommandReply(
                ok=False,
                system=self.slug,
                verb="trigger",
                message=f"{self.engine.info.label} is {self.lifecycle.state}; start it before triggering",
                command_id=ctx.command_id,
                state=self.lifecycle.state,
                desired=self.desired,
                status="rejected",
                error="not_running",
            )
            return reply
        run_id = new_id()
        loop = self.engine.primary_loop()
        loop = next((known for known in self._loops if known.name == loop.name), loop)
        task = asyncio.create_task(
            self.run_cycle(
                loop,
                run=lambda: self.engine.trigger(args),
                run_id=run_id,
                actor=ctx.actor,
                correlation_id=ctx.correlation_id,
            )
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        done, _ = await asyncio.wait({task}, timeout=self.settings.reply_budget)
        if done:
            outcome = task.result()
            return CommandReply(
                ok=True,
                system=self.slug,
                verb="trigger",
                message=outcome.detail or f"{self.engine.info.label} cycle completed",
                command_id=ctx.command_id,
                state=self.lifecycle.state,
                desired=self.desired,
                changed=True,
                run_id=run_id,
                result={"ok": outcome.ok, "result": outcome.result, **outcome.output},
            )
        return CommandReply(
            ok=True,
            system=self.slug,
            verb="trigger",
            message=f"{self.engine.info.label} cycle started; its result arrives as a cycle_completed event",
            command_id=ctx.command_id,
            state=self.lifecycle.state,
            desired=self.desired,
            changed=True,
            status="started",
            run_id=run_id,
        )

    def detail(self) -> dict[str, Any]:
        loops = [
            {
                "name": loop.name,
                "interval_seconds": loop.interval,
                "primary": loop.primary,
                "last_run": self._loop_last_run.get(loop.name),
                "active": loop.name in self._loop_tasks,
            }
            for loop in self._loops
        ]
        detail = {
            "name": self.slug,
            "label": self.engine.info.label,
            "schedule": self.engine.info.schedule,
            **{k: v for k, v in msgspec.to_builtins(self.snapshot()).items() if k != "extras"},
            **self.engine.status_extras(),
            **self.engine.detail_extras(),
            "loops": msgspec.to_builtins(loops),
            "process": msgspec.to_builtins(process_metrics()),
            "boot_id": self.boot_id,
        }
        return msgspec.to_builtins(detail)

    async def _seen_before(self, command_id: str) -> CommandReply | None:
        cached = self._replies.get(command_id)
        if cached is not None:
            return msgspec.structs.replace(cached, duplicate=True, changed=False)
        try:
            await self._commands_kv.create(f"{self.slug}.{command_id}", b"1")
        except KeyWrongLastSequenceError:
            return CommandReply(
                ok=True,
                system=self.slug,
                verb="",
                message=f"command {command_id} was already handled",
                command_id=command_id,
                state=self.lifecycle.state,
                desired=self.desired,
                duplicate=True,
            )
        return None

    def _remember(self, command_id: str, reply: CommandReply) -> None:
        self._replies[command_id] = reply
        while len(self._replies) > 1000:
            self._replies.popitem(last=False)

    def _reply(
        self,
        verb: str,
        command: Command,
        message: str,
        *,
        ok: bool = True,
        error: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> CommandReply:
        return CommandReply(
            ok=ok,
            system=self.slug,
            verb=verb,
            message=message,
            command_id=command.command_id or "",
            state=self.lifecycle.state,
            desired=self.desired,
            status="done" if ok else "rejected",
            error=error,
            result=result,
        )

    async def _reject(
        self, verb: str, subject: str, error: str, message: str, command: Command, origin: str
    ) -> CommandReply:
        actor = command.actor or ANONYMOUS_NATS
        command_id = command.command_id or new_id()
        ctx = _Context(verb, subject, origin, command_id, actor, command.correlation_id or "", command.reason)
        self.log.warning("command.rejected", subject=subject, error=error, message=message)
        await self._audit(ctx, "rejected", message)
        reply = self._reply(verb, command, message, ok=False, error=error)
        reply.command_id = command_id
        return reply

    async def _audit(
        self, ctx: _Context, outcome: str, message: str, batch: WriteBatch | None = None
    ) -> None:
        payload = CommandHandled(
            command_id=ctx.command_id,
            verb=ctx.verb,
            target=self.slug,
            origin=ctx.origin,
            outcome=outcome,
            message=message,
            reason=ctx.reason,
            subject=ctx.subject,
        )
        detail = f"{ctx.verb} from {ctx.origin}: {message}"
        if ctx.reason:
            detail += f" (reason: {ctx.reason})"
        event = self.new_event(
            payload,
            Summary(action=f"command_{ctx.verb}"[:64], detail=detail, result=outcome),
            actor=ctx.actor,
            correlation_id=ctx.correlation_id,
        )
        await (batch or self.publisher).publish(event)


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Done callback of an abandoned wait: fetch its outcome so asyncio does not log it."""
    if not task.cancelled():
        task.exception()


class _Context(msgspec.Struct):
    verb: str
    subject: str
    origin: str
    command_id: str
    actor: str
    correlation_id: str
    reason: str
    unless_stopped: bool = False  # a restart that yields to an operator's stop (heal-check)
