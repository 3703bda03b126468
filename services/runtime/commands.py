"""The story of a command: parse it, refuse it, or apply it under the transition lock as
one event, and answer.

- a standby passes a command on (``standby.py``); an instance still coming up makes it
  wait for what it turns out to be; a suspended (fenced) one refuses a change;
- ``status`` and ``detail`` are answered from the host's view;
- a keyed command is claimed in the ledger first (``idempotency.py``): a repeat gets the
  first reply, a key reused for another request is refused;
- a stop, start or restart is one lifecycle event (its own audit, ``EngineHost.move``);
  a trigger runs a cycle and answers within the reply budget;
- every refused, failed or no-op command is audited (``command_handled``), a burst of
  refusals from one sender folded into one record per window (``refusals.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING

import msgspec
import structlog

from contracts.commands import CommandReply
from contracts.events import new_id
from services.runtime import idempotency, refusals
from services.runtime.context import Fenced
from services.runtime.control import ControlRequest
from services.runtime.lifecycle import State
from services.runtime.loops import first_of
from services.runtime.replies import command_record, outcome_of
from services.runtime.tenure import ACTIVATING, STANDBY, SUSPENDED

if TYPE_CHECKING:
    from services.runtime.host import EngineHost

# how long the record of a refusal by a fenced instance may take to be written: the
# stream may be electing a leader (a few seconds), or out of this instance's reach
FENCED_AUDIT_S = 10.0


class Commands:
    def __init__(self, host: EngineHost) -> None:
        self.host = host
        self.refusals = refusals.RefusalFolder(window_s=host.settings.refusal_fold_window_s)
        self._fold_flush: asyncio.Task[None] | None = None

    async def dispatch(self, request: ControlRequest) -> CommandReply:
        host = self.host
        if request.refusal is not None:
            return await self._refuse(request)
        if request.mutating and not host.opened.is_set():
            # the control endpoints answer before the lease is tried: a command waits to be
            # acted on by what this instance turns out to be (a restarted process takes its
            # predecessor's lease at once), not recorded by a standby it is not
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(host.opened.wait(), host.settings.control_timeout * 0.5)
        if host.role == ACTIVATING:  # the lease is ours and the rebuild is under way
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(host.activated.wait(), host.settings.reply_budget)
        if host.role == SUSPENDED and request.mutating:
            # the lease could not be renewed (a lost server, a leader election): a change
            # waits, as its write would, for this instance to hold the lease again or to
            # learn that another one does, rather than being refused while the cluster heals
            await first_of(host.activated.wait(), host.deposed.wait(), timeout=host.settings.lease_ttl * 2)
        if host.role == SUSPENDED and request.mutating:
            message = f"{host.instance} lost the bus and is fenced until it holds the lease again"
            self._audit_in_background(request, "rejected", message)
            return host.replies.refused(request, "suspended", message)
        if host.role == STANDBY:
            return await host.standby.forward(request)
        return await self.answer(request)

    async def answer(self, request: ControlRequest) -> CommandReply:
        host = self.host
        sender_id = request.command.command_id or ""
        if request.verb == "status":
            return host.replies.make(
                "status", "status", command_id=sender_id, result=msgspec.to_builtins(host.snapshot())
            )
        if request.verb == "detail":
            return host.replies.make("detail", "detail", command_id=sender_id, result=host.detail())
        with structlog.contextvars.bound_contextvars(correlation_id=request.correlation_id):
            host.log.info(
                "command.received",
                verb=request.verb,
                subject=request.subject,
                actor=request.actor,
                command_id=request.command_id,
            )
            return await self._mutate(request)

    async def _mutate(self, request: ControlRequest) -> CommandReply:
        host = self.host
        binding = None
        if request.command.command_id:
            # the key is bound to (caller, verb, target, body): services.runtime.idempotency
            binding = idempotency.bind(
                request.command, caller=request.actor, verb=request.verb, target=host.slug
            )
            first = await host.ledger.claim(binding)
            if first is not None:
                reply = idempotency.answer(first, binding, state=host.lifecycle.state, desired=host.desired)
                if reply.error == idempotency.REUSED:
                    await self._refuse_quietly(request, reply.message, idempotency.REUSED)
                else:
                    await self.audit(request, "duplicate", reply.message)
                return reply

        if request.verb == "trigger":
            reply = await self._attempt(request, self._trigger(request))
            # the run id lets a job view know who started the run and when, while it runs
            await self.audit(request, outcome_of(reply), reply.message, run_id=reply.run_id)
        else:
            # Under the transition lock, so the next command's events are stored after these.
            # A change is audited by its own lifecycle event (one write); a command that
            # changed nothing, or failed, by a command_handled event.
            async with host.transition:
                reply = await self._attempt(request, self._change_state(request))
                if not reply.changed:
                    await self.audit(request, outcome_of(reply), reply.message)
        if binding is not None:  # the key now answers with this reply (a keyed command's second write)
            await host.ledger.record(binding, reply)
        return reply

    async def _attempt(self, request: ControlRequest, work: Awaitable[CommandReply]) -> CommandReply:
        try:
            reply = await work
        except Fenced as exc:
            # the change was stored before the fence (the next active instance, or this one
            # resumed, comes up that way); this instance did not apply it
            message = f"{exc}; the {request.verb} is recorded and applies when an instance holds the lease"
            reply = self.host.replies.refused(request, "suspended", message)
        except Exception as exc:
            self.host.log.exception("command.failed", verb=request.verb)
            reply = self.host.replies.make(
                request.verb,
                f"{request.verb} failed: {exc}",
                command_id=request.command_id,
                ok=False,
                error="internal",
            )
        return reply

    async def _change_state(self, request: ControlRequest) -> CommandReply:
        host = self.host
        label = host.engine.info.label
        verb = request.verb
        move = {"reason": request.command.reason or f"{verb} by {request.actor}", "actor": request.actor}
        if verb == "stop":
            target, done, already = State.STOPPED, f"{label} stopped", f"{label} was already stopped"
        elif verb == "start":
            target, done, already = State.RUNNING, f"{label} started", f"{label} was already running"
        elif request.unless_stopped and host.desired == State.STOPPED:
            # heal-check's restart: an operator's stop since it looked wins over the healer
            message = f"{label} was stopped by an operator; not restarting it"
            return host.replies.make(verb, message, command_id=request.command_id)
        else:  # restart: "stopped" is stored with desired "running": a crash mid-restart comes back running
            await host.move(State.STOPPED, **move, desired=State.RUNNING, request=request)
            target, done, already = State.RUNNING, f"{label} restarted", f"{label} restarted"
        changed = await host.move(target, **move, request=request, message=done)
        return host.replies.make(
            verb, done if changed else already, command_id=request.command_id, changed=changed
        )

    async def _trigger(self, request: ControlRequest) -> CommandReply:
        host = self.host
        label = host.engine.info.label
        if host.lifecycle.state != State.RUNNING:
            return host.replies.refused(
                request, "not_running", f"{label} is {host.lifecycle.state}; start it before triggering"
            )
        run_id = new_id()
        args = request.command.args
        task = asyncio.create_task(
            host.run_cycle(
                host.engine.primary_loop(),
                run=lambda: host.engine.trigger(args),
                run_id=run_id,
                actor=request.actor,
                correlation_id=request.correlation_id,
            )
        )
        host.background.add(task)
        task.add_done_callback(host.background.discard)
        done, _ = await asyncio.wait({task}, timeout=host.settings.reply_budget)
        if not done:
            return host.replies.make(
                "trigger",
                f"{label} cycle started; its result arrives as a cycle_completed event",
                command_id=request.command_id,
                changed=True,
                status="started",
                run_id=run_id,
            )
        outcome = task.result()
        if refusals.argument_error(outcome.error_type, args):
            # the cycle failed on the caller's arguments: an error reply, never ok: true
            return host.replies.make(
                "trigger",
                f"invalid trigger arguments: {refusals.bound(outcome.detail)}",
                command_id=request.command_id,
                ok=False,
                error="invalid_arguments",
                run_id=run_id,
            )
        return host.replies.make(
            "trigger",
            outcome.detail or f"{label} cycle completed",
            command_id=request.command_id,
            changed=True,
            run_id=run_id,
            result={"ok": outcome.ok, "result": outcome.result, **outcome.output},
        )

    # --- refusals and the audit -----------------------------------------------------------

    async def _refuse(self, request: ControlRequest) -> CommandReply:
        refusal = request.refusal
        assert refusal is not None
        await self._refuse_quietly(request, refusal.message, refusal.error)
        return self.host.replies.refused(request, refusal.error, refusal.message)

    async def _refuse_quietly(self, request: ControlRequest, message: str, error: str) -> None:
        """Log and audit one refused command, bounded; a burst from one sender is folded
        into one record per window (services.runtime.refusals)."""
        if not self.refusals.admit(request.actor, time.monotonic(), (request, message)):
            self._schedule_refusal_flush()
            return
        self.host.log.warning(
            "command.rejected", subject=refusals.bound(request.subject, 200), error=error, message=message
        )
        await self.audit(request, "rejected", message)

    def _schedule_refusal_flush(self) -> None:
        if self._fold_flush is None or self._fold_flush.done():
            self._fold_flush = asyncio.create_task(
                refusals.flush_when_due(self.refusals, self.flush_refusals)
            )

    async def flush_refusals(self, *, everything: bool = False) -> None:
        for burst in self.refusals.due(time.monotonic(), everything=everything):
            request, message = burst.last  # type: ignore[misc]
            self.host.log.warning("command.rejected_burst", sender=burst.sender, repeats=burst.repeats)
            await self.audit(request, "rejected", f"{message} — and {burst.detail()}", repeats=burst.repeats)

    def _audit_in_background(self, request: ControlRequest, outcome: str, message: str) -> None:
        """The record of a reply that must not wait for it: a fenced instance may not reach
        the stream for a while, and the caller has the reply meanwhile. The write is
        bounded (``FENCED_AUDIT_S``); if it cannot be made, the log says so."""

        async def write() -> None:
            try:
                await asyncio.wait_for(self.audit(request, outcome, message), FENCED_AUDIT_S)
            except Exception as exc:
                self.host.log.warning(
                    "command.audit_lost", verb=request.verb, outcome=outcome, error=type(exc).__name__
                )

        self.host.spawn(write())

    async def audit(
        self,
        request: ControlRequest,
        outcome: str,
        message: str,
        *,
        run_id: str | None = None,
        repeats: int = 0,
    ) -> None:
        host = self.host
        payload, summary = command_record(
            request, host.slug, outcome, message, run_id=run_id, repeats=repeats
        )
        event = host.new_event(payload, summary, actor=request.actor, correlation_id=request.correlation_id)
        await host.publisher.publish(event)
