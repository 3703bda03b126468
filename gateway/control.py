"""The gateway's side of control: send a command to one engine (or to all, in
parallel) over core NATS request/reply and turn the answer into HTTP terms."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from contracts import subjects
from contracts.commands import MAX_COMMAND_BYTES, Command, CommandReply, reply_decoder
from contracts.events import CommandHandled, Summary, new_event, new_id
from contracts.systems import ALL, SYSTEMS
from services.runtime import idempotency, refusals
from services.runtime.bus import EventPublisher

# Engine error codes -> HTTP status
HTTP_STATUS = {
    "not_running": 409,
    "invalid_command": 400,
    "invalid_arguments": 400,
    "unknown_verb": 400,
    "idempotency_key_reused": 422,
    "internal": 500,
}


class CommandRefused(Exception):
    """A command the gateway will not send: the caller's mistake (HTTP 422)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class EngineTimeout(Exception):
    def __init__(self, system: str, timeout: float) -> None:
        super().__init__(f"engine {system!r} did not answer within {timeout:g} s")
        self.system = system


class UnknownSystem(Exception):
    def __init__(self, system: str) -> None:
        known = ", ".join(SYSTEMS)
        super().__init__(f"unknown system {system!r}; known systems: {known}")
        self.system = system


def encode_command(command: Command) -> bytes:
    try:
        body = msgspec.json.encode(command)
    except UnicodeEncodeError:
        raise CommandRefused("the command's text is not valid Unicode (a lone surrogate)") from None
    if len(body) > MAX_COMMAND_BYTES:
        raise CommandRefused(f"the command is {len(body)} bytes encoded; at most {MAX_COMMAND_BYTES}")
    return body


class ControlClient:
    def __init__(
        self,
        nc: Client,
        publisher: EventPublisher,
        timeout: float,
        *,
        fold_window: float = 10.0,
        ledger: idempotency.CommandLedger | None = None,
    ) -> None:
        self.nc = nc
        # HTTP Idempotency-Keys across targets: an engine knows only its own keys, so the
        # gateway binds each (caller, key) to its target too, before anything is sent
        self.ledger = ledger
        self.publisher = publisher
        self.timeout = timeout
        # refusals of unknown targets, folded per sender like the engines' (runtime.refusals)
        self.refusals = refusals.RefusalFolder(window_s=fold_window)
        self._flush: asyncio.Task[None] | None = None

    async def send(
        self,
        system: str,
        verb: str,
        *,
        actor: str,
        reason: str = "",
        command_id: str | None = None,
        correlation_id: str | None = None,
        args: dict[str, Any] | None = None,
        origin: str = "http",
    ) -> CommandReply:
        if system not in SYSTEMS:
            await self.audit_unknown(system, verb, actor=actor, reason=reason, origin=origin)
            raise UnknownSystem(system)
        command = Command(
            actor=actor,
            reason=reason,
            command_id=command_id,  # only a client's Idempotency-Key asks the engine to dedup
            correlation_id=correlation_id,
            args=args or {},
        )
        try:
            body = encode_command(command)
        except CommandRefused as exc:  # refused here, never sent: the gateway audits it
            await self.audit_refused(
                system, verb, actor=actor, reason=reason, origin=origin, message=str(exc)
            )
            raise
        if command_id and self.ledger is not None:
            binding = idempotency.bind(command, caller=actor, verb=verb, target=system)
            first = await self.ledger.claim(binding)
            if first is not None and not idempotency.same_request(first, binding):
                reply = idempotency.answer(first, binding, state="", desired="")
                await self.audit_refused(
                    system, verb, actor=actor, reason=reason, origin=origin, message=reply.message
                )
                return reply
        # a hint for the engine's log only: the engine decides the origin from the subject
        # and the sender, never from this header (docs/security.md, threat model)
        headers = {"Aoc-Origin": origin}
        if correlation_id:
            headers["X-Correlation-ID"] = correlation_id
        try:
            msg = await self.nc.request(
                subjects.ctl(system, verb),
                body,
                timeout=self.timeout,
                headers=headers,
            )
        except (NatsTimeoutError, TimeoutError, NoRespondersError):
            raise EngineTimeout(system, self.timeout) from None
        return reply_decoder.decode(msg.data)

    async def send_all(self, verb: str, **kwargs: Any) -> dict[str, dict[str, Any]]:
        """The same command to every engine at once; one result per system. Raises only
        CommandRefused, before anything is sent, when the command itself is unacceptable."""
        actor, reason = kwargs.get("actor"), kwargs.get("reason", "")
        try:
            encode_command(Command(actor=actor, reason=reason, args=kwargs.get("args") or {}))
        except CommandRefused as exc:
            origin = kwargs.get("origin", "http")
            await self.audit_refused(
                ALL, verb, actor=actor or "", reason=reason, origin=origin, message=str(exc)
            )
            raise

        async def one(system: str) -> dict[str, Any]:
            try:
                return msgspec.to_builtins(await self.send(system, verb, **kwargs))
            except EngineTimeout as exc:
                return {"ok": False, "system": system, "verb": verb, "error": "timeout", "message": str(exc)}

        results = await asyncio.gather(*(one(system) for system in SYSTEMS))
        return dict(zip(SYSTEMS, results, strict=True))

    async def audit_unknown(
        self, target: str, verb: str, *, actor: str, reason: str, origin: str, note: str = ""
    ) -> None:
        """An unknown target has no engine to audit it: the gateway records the refusal
        (bounded; a burst from one sender folded into one record per window)."""
        message = refusals.bound(str(UnknownSystem(target)), 500)
        if note:
            message += f" ({note})"
        await self.audit_refused(target, verb, actor=actor, reason=reason, origin=origin, message=message)

    async def audit_refused(
        self, target: str, verb: str, *, actor: str, reason: str, origin: str, message: str
    ) -> None:
        """A command the gateway refused itself (an unknown target, a body it would not
        send): recorded bounded, a burst from one sender folded into one record."""
        refusal = (target, verb, actor, reason, origin, refusals.bound(message, 1000))
        if not self.refusals.admit(actor, time.monotonic(), refusal):
            if self._flush is None or self._flush.done():
                self._flush = asyncio.create_task(refusals.flush_when_due(self.refusals, self.flush_refusals))
            return
        await self._publish_refusal(*refusal)

    async def _publish_refusal(
        self, target: str, verb: str, actor: str, reason: str, origin: str, message: str, repeats: int = 0
    ) -> None:
        payload = CommandHandled(
            command_id=new_id(),
            verb=refusals.bound(verb, 64),
            target=refusals.bound(target, 64),
            origin=origin,
            outcome="rejected",
            message=message,
            reason=refusals.bound(reason, 1000),
            subject=refusals.bound(subjects.ctl(target, verb), refusals.SUBJECT_LIMIT),
            repeats=repeats,
        )
        event = new_event(
            system="gateway",
            payload=payload,
            summary=Summary(action=f"command_{verb}"[:64], detail=message, result="rejected"),
            source="gateway",
            actor=actor,
        )
        await self.publisher.publish(event)

    async def flush_refusals(self, *, everything: bool = False) -> None:
        for burst in self.refusals.due(time.monotonic(), everything=everything):
            target, verb, actor, reason, origin, message = burst.last  # type: ignore[misc]
            await self._publish_refusal(
                target, verb, actor, reason, origin, f"{message} — and {burst.detail()}", burst.repeats
            )

    async def close(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
        with contextlib.suppress(Exception):
            await self.flush_refusals(everything=True)
