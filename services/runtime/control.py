"""The control surface of an engine on the bus.

``parse_request`` turns one control message into a ``ControlRequest`` (pure: subject,
headers and body in; verb, origin, actor and command, or the reason it is refused,
out). ``ControlEndpoints`` registers the engine as a NATS micro service (``$SRV``
discovery, ping, stats) on aoc.ctl.<slug>.* and aoc.ctl.all.* (and the five-token
forms of human NATS users), hands each request to the host and sends the reply."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import EndpointStats, Service

from contracts import subjects
from contracts.commands import VERBS, Command, CommandError, CommandReply, decode_command, reply_decoder
from contracts.events import encode, new_id
from contracts.origin import MCP_ORIGIN
from services.runtime import refusals

ANONYMOUS_NATS = "nats:anonymous"
VERSION = "0.1.0"


@dataclass(frozen=True, slots=True)
class Refusal:
    error: str  # not_a_command | invalid_command | unknown_verb
    message: str


@dataclass(slots=True)
class ControlRequest:
    """One control message, understood. ``refusal`` is set when it is not a command the
    engine will act on; ``command`` is then what could be read of it (for the audit)."""

    subject: str
    verb: str
    origin: str  # nats | http | cli | all (broadcast subject)
    command: Command
    actor: str
    command_id: str
    correlation_id: str
    refusal: Refusal | None = None
    body: bytes = b""  # as received: what a standby forwards to the active instance
    headers: dict[str, str] | None = None
    body_digest: str = ""  # SHA-256 of a refused body that could not be decoded

    @property
    def mutating(self) -> bool:
        return self.verb not in ("status", "detail")

    @property
    def unless_stopped(self) -> bool:
        """A restart that yields to an operator's stop (heal-check's)."""
        return self.verb == "restart" and self.command.args.get("unless_stopped") is True


# values of the Aoc-Origin hint a relay may send (the gateway: "http", or "mcp:<client>"
# for the MCP server's calls, contracts/origin.py); see command_origin
RELAYED_ORIGINS = frozenset({"http", "cli"})


def command_origin(subject: str, headers: dict[str, str]) -> str:
    """Where a command came from, decided here, by the receiver.

    The five-token form ``aoc.ctl.<system>.<verb>.<user>`` is a human NATS user's: its
    origin is "nats" (or "all" for the broadcast), whatever headers the sender adds. Only
    the four-token form may carry a relay's hint (``Aoc-Origin: http`` from the gateway),
    because on the secure server only the gateway and heal-check may publish it — the hint
    is trusted exactly as far as the relayed actor in the body (docs/security.md)."""
    broadcast = subject.startswith(subjects.ctl("all", ""))
    default = "all" if broadcast else "nats"
    if subject.count(".") != 3:
        return default
    hint = headers.get("Aoc-Origin", "")
    return hint if hint in RELAYED_ORIGINS or MCP_ORIGIN.fullmatch(hint) else default


def parse_request(subject: str, body: bytes, headers: dict[str, str], reply_to: str | None) -> ControlRequest:
    parsed = subjects.parse_ctl(subject)
    verb = refusals.bound(parsed[1] if parsed else subject.rsplit(".", 1)[-1], 64)
    origin = command_origin(subject, headers)

    def request(
        command: Command, command_id: str, correlation_id: str, refusal: Refusal | None, body_digest: str = ""
    ) -> ControlRequest:
        # the actor: the server-vouched user (5 tokens) or the relayed body's; never a header
        actor = command.actor or ANONYMOUS_NATS
        return ControlRequest(
            subject,
            verb,
            origin,
            command,
            actor,
            command_id,
            correlation_id,
            refusal,
            body,
            headers,
            body_digest,
        )

    def refused(error: str, message: str, command: Command, body_digest: str = "") -> ControlRequest:
        return request(
            command,
            command.command_id or new_id(),
            command.correlation_id or "",
            Refusal(error, message),
            body_digest,
        )

    # nats-server does not check a push consumer's deliver subject against its
    # creator's permissions (nats-server#8274): a stored message redelivered here
    # keeps its stored subject or carries a $JS.ACK reply. Neither is a command.
    if parsed is None or (reply_to or "").startswith("$JS.ACK."):
        return refused(
            "not_a_command", f"{subject} delivered by JetStream is not a control command", Command()
        )
    # a fifth token is the sender's NATS user, which the secure server vouched for
    nats_user = subject.split(".")[4] if subject.count(".") == 4 else None
    try:
        command = decode_command(body)
    except CommandError as exc:
        sender = Command(actor=f"nats:{nats_user}") if nats_user else Command()
        # the message may quote the sender's field names: bounded, with the body's digest
        message = f"{refusals.bound(str(exc))} (body {refusals.body_note(body)})"
        return refused("invalid_command", message, sender, refusals.digest(body))
    if nats_user is not None:
        command = msgspec.structs.replace(command, actor=f"nats:{nats_user}")
    if verb not in VERBS:
        return refused("unknown_verb", f"unknown verb {verb!r}; expected one of {', '.join(VERBS)}", command)
    command_id = command.command_id or new_id()
    return request(
        command, command_id, command.correlation_id or headers.get("X-Correlation-ID") or command_id, None
    )


Handler = Callable[[ControlRequest], Awaitable[CommandReply]]


class ControlEndpoints:
    def __init__(
        self,
        nc: Client,
        *,
        slug: str,
        label: str,
        schedule: str,
        handler: Handler,
        stats: Callable[[], dict[str, Any]],
        instance: str = "",
    ) -> None:
        self._nc = nc
        self._instance = instance
        self._slug = slug
        self._label = label
        self._schedule = schedule
        self._handler = handler
        self._stats = stats
        self._service: Service | None = None
        self._background: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self._service = await add_service(
            self._nc,
            name=f"aoc-{self._slug}",
            version=VERSION,
            description=self._label,
            # which process this is: the health probe finds its own instance by these
            metadata={
                "system": self._slug,
                "schedule": self._schedule,
                "instance": self._instance,
                "host": socket.gethostname(),
                "pid": str(os.getpid()),
            },
            # one queue group per engine: scaled-out instances of one engine share
            # a command, while every engine still receives aoc.ctl.all.*
            queue_group=f"aoc-{self._slug}",
            stats_handler=self._endpoint_stats,
        )
        endpoints = {
            "control": subjects.ctl_wildcard(self._slug),
            "broadcast": subjects.ctl_wildcard("all"),
            # human NATS users: the fifth token is their user name, vouched for by the server
            "operator": subjects.ctl_user_wildcard(self._slug),
            "operator-broadcast": subjects.ctl_user_wildcard("all"),
        }
        for name, subject in endpoints.items():
            await self._service.add_endpoint(name=name, subject=subject, handler=self._on_request)

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self._service is not None:
            await self._service.stop()

    def _endpoint_stats(self, _endpoint: EndpointStats) -> dict[str, Any]:
        return self._stats()  # natscli wants `data` to be an object (NATS-NOTES.md)

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
        parsed = parse_request(request.subject, request.data, request.headers or {}, reply_to)
        reply = await self._handler(parsed)
        try:
            if reply.ok:
                await request.respond(encode(reply))
            else:
                # the description travels in a header: ASCII, one line, bounded (the body has it all)
                description = refusals.header_text(reply.message)
                await request.respond_error(reply.error or "error", description, data=encode(reply))
        except ValueError:
            pass  # `nats pub` sends no reply subject: the audit event is the answer


FORWARDED_SUBJECT = "Aoc-Subject"  # the subject a forwarded command was first sent to
FORWARDED_BY = "Aoc-Forwarded-By"
COMMAND_ID = "Aoc-Command-Id"  # the id the standby gave it, so a fallback cannot apply it twice


class ForwardFailed(Exception):
    """The active instance did not answer a forwarded command."""


async def forward(
    nc: Client, subject: str, request: ControlRequest, *, by: str, timeout: float
) -> CommandReply:
    """Send a command a standby received to the active instance, and return its reply."""
    headers = dict(request.headers or {})
    headers.update({FORWARDED_SUBJECT: request.subject, FORWARDED_BY: by, COMMAND_ID: request.command_id})
    try:
        msg = await nc.request(subject, request.body, timeout=timeout, headers=headers)
    except (NatsTimeoutError, TimeoutError, NoRespondersError) as exc:
        raise ForwardFailed(type(exc).__name__) from None
    reply = reply_decoder.decode(msg.data)
    if reply.error == "not_active":
        raise ForwardFailed("not_active")
    return reply


def forwarded_request(
    msg_subject: str, body: bytes, headers: dict[str, str], reply_to: str | None
) -> ControlRequest:
    """A command forwarded by a standby, as it was first received."""
    inner = dict(headers)
    subject = inner.pop(FORWARDED_SUBJECT, msg_subject)
    inner.pop(FORWARDED_BY, None)
    command_id = inner.pop(COMMAND_ID, None)
    request = parse_request(subject, body, inner, reply_to)
    if command_id and not request.command.command_id:
        request.command_id = command_id
        request.correlation_id = request.command.correlation_id or inner.get("X-Correlation-ID") or command_id
    return request
