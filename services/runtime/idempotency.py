"""Idempotency keys: a ``command_id`` (HTTP ``Idempotency-Key``) is bound to the exact
request it first came with.

The binding is (caller, verb, target, digest of the body). The same key with the same
request gets the original reply again (``duplicate: true``, nothing done twice); the
same key with a different request is refused with ``idempotency_key_reused``, naming
the request that used it first — a key can never turn an emergency stop into a replay
of someone's start (the model: the IETF draft "The Idempotency-Key HTTP Header Field"
and Stripe's semantics).

Keys are scoped per caller, as Stripe scopes them per account: another caller's key
``K`` is a different key. So one caller can neither replay nor block another's command
by guessing or reusing its key, and a kill switch is never a no-op because someone
else used the same key (docs/decisions.md, "Trust").

Bindings live in the KV bucket ``aoc_command_ids`` (key ``<engine>.<caller digest>.<key>``,
TTL = the stream's duplicate window), written with ``create`` before the command runs
and completed with its reply afterwards, so they hold across an engine restart. A
binding whose reply was never written (the engine died mid-command) still refuses a
different request and answers the same one as a duplicate whose outcome is in the audit
log.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts.commands import Command, CommandReply
from contracts.events import utcnow

REUSED = "idempotency_key_reused"
MAX_STORED_REPLY = 16_384  # bytes of reply kept with a binding; a larger result is dropped from it


class Binding(msgspec.Struct, kw_only=True):
    command_id: str
    caller: str
    verb: str
    target: str
    digest: str
    time: str  # ISO 8601, when the key was first used
    reply: CommandReply | None = None  # set once the command was handled


_decode_binding = msgspec.json.Decoder(Binding).decode
_canonical = msgspec.json.Encoder(order="sorted")


def body_digest(command: Command) -> str:
    """What a request asks for, apart from who and where: its reason and arguments.
    (The correlation id names one HTTP attempt, so a retry may change it.)"""
    return hashlib.sha256(_canonical.encode({"reason": command.reason, "args": command.args})).hexdigest()


def caller_key(caller: str) -> str:
    """A KV-safe token for a caller name (names may hold ':' '@' '|' ...)."""
    return hashlib.sha256(caller.encode()).hexdigest()[:20]


def bind(command: Command, *, caller: str, verb: str, target: str) -> Binding:
    assert command.command_id
    return Binding(
        command_id=command.command_id,
        caller=caller,
        verb=verb,
        target=target,
        digest=body_digest(command),
        time=utcnow().isoformat(),
    )


def same_request(first: Binding, again: Binding) -> bool:
    return (first.caller, first.verb, first.target, first.digest) == (
        again.caller,
        again.verb,
        again.target,
        again.digest,
    )


def differences(first: Binding, again: Binding) -> list[str]:
    names = ("caller", "verb", "target", "digest")
    return [
        name if name != "digest" else "body" for name in names if getattr(first, name) != getattr(again, name)
    ]


def describe(binding: Binding) -> dict[str, Any]:
    return {
        "verb": binding.verb,
        "target": binding.target,
        "actor": binding.caller,
        "time": binding.time,
        "digest": binding.digest,
    }


def answer(first: Binding, again: Binding, *, state: str, desired: str) -> CommandReply:
    """The reply to a key seen before: the original reply, or the refusal of a reuse."""
    if not same_request(first, again):
        differs = ", ".join(differences(first, again))
        return CommandReply(
            ok=False,
            system=again.target,
            verb=again.verb,
            message=(
                f"idempotency key {again.command_id!r} was first used at {first.time} by {first.caller} "
                f"for {first.verb} of {first.target}; this request differs in {differs}"
                ": a different request needs a new key"
            ),
            command_id=again.command_id,
            state=state,
            desired=desired,
            status="rejected",
            error=REUSED,
            result={"first_request": describe(first)},
        )
    if first.reply is not None:
        return msgspec.structs.replace(first.reply, duplicate=True, changed=False)
    return CommandReply(
        ok=True,
        system=again.target,
        verb=again.verb,
        message=f"command {again.command_id} was already received; its outcome is in the audit log",
        command_id=again.command_id,
        state=state,
        desired=desired,
        duplicate=True,
    )


def with_reply(binding: Binding, reply: CommandReply) -> Binding:
    stored = reply
    if len(msgspec.json.encode(reply)) > MAX_STORED_REPLY:
        stored = msgspec.structs.replace(reply, result={"note": "result too large to keep with the key"})
    return msgspec.structs.replace(binding, reply=stored)


class CommandLedger:
    """The bindings of one engine: KV-backed, with the newest ``keep`` in memory."""

    def __init__(self, kv: KeyValue, bucket: str, slug: str, *, keep: int = 1000) -> None:
        self._kv = kv
        self._bucket = bucket
        self._slug = slug
        self._keep = keep
        self._cache: OrderedDict[str, Binding] = OrderedDict()

    def key(self, binding: Binding) -> str:
        return f"{self._slug}.{caller_key(binding.caller)}.{binding.command_id}"

    def subject(self, binding: Binding) -> str:
        """The KV put subject, for writing the completed binding in a WriteBatch."""
        return f"$KV.{self._bucket}.{self.key(binding)}"

    async def claim(self, binding: Binding) -> Binding | None:
        """None: the key is new for this caller, and now bound to this request. Otherwise
        the binding it was first used with."""
        key = self.key(binding)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        for _ in range(3):
            try:
                await self._kv.create(key, msgspec.json.encode(binding))
            except KeyWrongLastSequenceError:
                try:
                    entry = await self._kv.get(key)
                except KeyNotFoundError:
                    continue  # expired in between: claim it again
                first = _stored_binding(entry.value or b"", binding)
                self._remember(key, first)
                return first
            self._remember(key, binding)
            return None
        return None

    def completed(self, binding: Binding, reply: CommandReply) -> bytes:
        """The binding with its reply, encoded; remembered in memory at once."""
        done = with_reply(binding, reply)
        self._remember(self.key(binding), done)
        return msgspec.json.encode(done)

    async def record(self, binding: Binding, reply: CommandReply) -> None:
        await self._kv.put(self.key(binding), self.completed(binding, reply))

    def _remember(self, key: str, binding: Binding) -> None:
        self._cache[key] = binding
        self._cache.move_to_end(key)
        while len(self._cache) > self._keep:
            self._cache.popitem(last=False)


def _stored_binding(value: bytes, asked: Binding) -> Binding:
    try:
        return _decode_binding(value)
    except msgspec.DecodeError:
        # a record from before bindings (b"1"): it knows no request, so it can only
        # say "seen"; treat it as the same request (the old behaviour)
        return msgspec.structs.replace(asked, time="(before bindings were recorded)")
