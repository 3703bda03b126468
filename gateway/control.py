"""The gateway's side of control: send a command to one engine (or to all, in
parallel) over core NATS request/reply and turn the answer into HTTP terms."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from contracts import subjects
from contracts.commands import Command, CommandReply, reply_decoder
from contracts.events import CommandHandled, Summary, new_event, new_id
from contracts.systems import SYSTEMS
from services.runtime.bus import EventPublisher

# Engine error codes -> HTTP status
HTTP_STATUS = {"not_running": 409, "invalid_command": 400, "unknown_verb": 400, "internal": 500}


class EngineTimeout(Exception):
    def __init__(self, system: str, timeout: float) -> None:
        super().__init__(f"engine {system!r} did not answer within {timeout:g} s")
        self.system = system


class UnknownSystem(Exception):
    def __init__(self, system: str) -> None:
        known = ", ".join(SYSTEMS)
        super().__init__(f"unknown system {system!r}; known systems: {known}")
        self.system = system


class ControlClient:
    def __init__(self, nc: Client, publisher: EventPublisher, timeout: float) -> None:
        self.nc = nc
        self.publisher = publisher
        self.timeout = timeout

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
        headers = {"Aoc-Origin": origin}
        if correlation_id:
            headers["X-Correlation-ID"] = correlation_id
        try:
            msg = await self.nc.request(
                subjects.ctl(system, verb),
                msgspec.json.encode(command),
                timeout=self.timeout,
                headers=headers,
            )
        except (NatsTimeoutError, TimeoutError, NoRespondersError):
            raise EngineTimeout(system, self.timeout) from None
        return reply_decoder.decode(msg.data)

    async def send_all(self, verb: str, **kwargs: Any) -> dict[str, dict[str, Any]]:
        """The same command to every engine at once; one result per system, never raises."""

        async def one(system: str) -> dict[str, Any]:
            try:
                return msgspec.to_builtins(await self.send(system, verb, **kwargs))
            except EngineTimeout as exc:
                return {"ok": False, "system": system, "verb": verb, "error": "timeout", "message": str(exc)}

        results = await asyncio.gather(*(one(system) for system in SYSTEMS))
        return dict(zip(SYSTEMS, results, strict=True))

    async def audit_unknown(self, target: str, verb: str, *, actor: str, reason: str, origin: str) -> None:
        """An unknown target has no engine to audit it: the gateway records the refusal."""
        message = str(UnknownSystem(target))
        event = new_event(
            system="gateway",
            payload=CommandHandled(
                command_id=new_id(),
                verb=verb,
                target=target[:64],
                origin=origin,
                outcome="rejected",
                message=message,
                reason=reason,
                subject=subjects.ctl(target, verb)[:200],
            ),
            summary=Summary(action=f"command_{verb}"[:64], detail=message[:500], result="rejected"),
            source="gateway",
            actor=actor,
        )
        await self.publisher.publish(event)
