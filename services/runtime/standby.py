"""A standby's commands: what an instance that does not hold the lease does with one.

- it passes every command but ``status``/``detail`` to the active instance (on
  ``aoc.inst.<system>.<instance>``) and relays its reply; the active instance answers a
  forwarded command here too (``on_forwarded``);
- when no active instance answers: ``status``/``detail`` are answered by the standby, a
  vacant lease is taken at once, and a stop, start or restart is recorded as the durable
  desired state (fenced on the newest lifecycle event), which the next active instance
  obeys and an active instance that was only slow follows (``tenure.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nats.aio.msg import Msg

from contracts import subjects
from contracts.commands import CommandReply
from contracts.events import encode
from services.runtime import control
from services.runtime.bus import Superseded
from services.runtime.control import ControlRequest, ForwardFailed, forwarded_request
from services.runtime.lifecycle import State
from services.runtime.tenure import STANDBY

if TYPE_CHECKING:
    from services.runtime.host import EngineHost


class Standby:
    def __init__(self, host: EngineHost) -> None:
        self.host = host

    async def on_forwarded(self, msg: Msg) -> None:
        """A command a standby received and passed on to this (active) instance."""
        host = self.host
        request = forwarded_request(msg.subject, msg.data, dict(msg.headers or {}), msg.reply)
        if host.role == STANDBY:
            reply = host.replies.refused(request, "not_active", f"{host.instance} is not the active instance")
        else:
            reply = await host.commands.dispatch(request)
        if msg.reply:
            await msg.respond(encode(reply))

    async def forward(self, request: ControlRequest) -> CommandReply:
        """A standby passes a command to the active instance. When none answers: status and
        detail are answered here; a vacant lease is taken; a stop, start or restart is
        recorded as the durable desired state, which the next active instance obeys."""
        host = self.host
        holder, epoch = await host.lease.holder()
        if holder is not None and holder.boot_id != host.boot_id:
            timeout = min(host.settings.reply_budget + 0.3, host.settings.control_timeout * 0.75)
            try:
                return await control.forward(
                    host.nc,
                    subjects.instance(host.slug, holder.instance),
                    request,
                    by=host.instance,
                    timeout=timeout,
                )
            except ForwardFailed as exc:
                host.log.warning("command.forward_failed", active=holder.instance, error=str(exc))
        if request.verb in ("status", "detail"):
            return await host.commands.answer(request)
        if holder is None and not host.keeper.passive:
            acquired = await host.lease.try_acquire()
            if acquired is not None:
                host.keeper.held_since_renewal()
                await host.tenure.activate(acquired)
                return await host.commands.answer(request)
        if request.verb in ("stop", "start", "restart"):
            return await self._record_for_next_active(request, epoch)
        message = f"no active instance of {host.engine.info.label} answered; try again in a few seconds"
        reply = host.replies.refused(request, "no_active_instance", message)
        await host.commands.audit(request, "failed", message)
        return reply

    async def _record_for_next_active(self, request: ControlRequest, epoch: int) -> CommandReply:
        """During a failover: store the command's desired state (fenced on the newest
        lifecycle event), so whichever instance is active next comes up that way."""
        host = self.host
        target = State.STOPPED if request.verb == "stop" else State.RUNNING
        label = host.engine.info.label
        message = (
            f"{label} {request.verb} recorded by standby {host.instance}: no active instance answered; "
            f"the next active instance comes up {target}"
        )
        async with host.transition:
            for _ in range(3):
                await host.desired_state.load()
                last = host.desired_state.last
                if last is not None and last.command_id == request.command_id:
                    return host.replies.make(
                        request.verb, "already applied", command_id=request.command_id, duplicate=True
                    )
                previous = State(last.state) if last is not None else State.STOPPED
                host.desired_state.value = target
                event = host.lifecycle_event(
                    State.STOPPED,
                    previous,
                    request.command.reason or message,
                    request.actor,
                    request,
                    message,
                )
                event.epoch = epoch  # the epoch it writes under: the holder's it saw, not a deposed one
                try:
                    await host.desired_state.store(event, host.publisher)
                    break
                except Superseded:
                    continue
            else:
                raise Superseded("the desired state kept changing while a standby recorded a command")
            if target == State.RUNNING:  # its own shared loops follow what it recorded
                host.tenure.run_shared_loops()
            else:
                await host.loops.stop()
        return host.replies.make(
            request.verb, message, command_id=request.command_id, changed=True, status="recorded"
        )
