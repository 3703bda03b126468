"""Control commands and replies.

A command body is empty or a JSON object — exactly what ``nats req aoc.ctl.x.stop ''``
or ``nats pub aoc.ctl.all.stop '{"actor":"alice","reason":"incident 42"}'`` sends.
Unknown fields are refused so a typo ("reson") is an error, not a silent default.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

# A command is a few fields and small args: anything larger is refused before it is decoded
# (and what a refusal copies into its audit event and log line is bounded: runtime.refusals)
MAX_COMMAND_BYTES = 65_536

VERBS = ("trigger", "stop", "start", "restart", "status", "detail")
MUTATING_VERBS = frozenset({"trigger", "stop", "start", "restart"})

Short = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Reason = Annotated[str, msgspec.Meta(max_length=1000)]
# command ids double as KV keys (dedup), so keep them to KV-safe characters
CommandId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_=-]{1,100}$")]


class Command(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    actor: Short | None = None
    reason: Reason = ""
    command_id: CommandId | None = None
    correlation_id: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    args: dict[str, Any] = {}


class CommandReply(msgspec.Struct, kw_only=True):
    ok: bool
    system: str
    verb: str
    message: str
    command_id: str = ""
    state: str = ""
    desired: str = ""
    changed: bool = False  # False when the engine already was in the requested state
    duplicate: bool = False  # True when this command id was already handled
    status: str = "done"  # done | started (long work; result follows as an event) | rejected
    run_id: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None


class CommandError(ValueError):
    """A command that cannot be parsed; the message is safe to send back."""


_command_decoder = msgspec.json.Decoder(Command)


def decode_command(body: bytes) -> Command:
    if len(body) > MAX_COMMAND_BYTES:
        raise CommandError(f"command body of {len(body)} bytes is larger than {MAX_COMMAND_BYTES}")
    if not body.strip():
        return Command()
    try:
        return _command_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise CommandError(f"invalid command body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise CommandError(f"malformed JSON in command body: {exc}") from None
    except RecursionError:
        raise CommandError("malformed JSON in command body: nested too deeply") from None


reply_decoder = msgspec.json.Decoder(CommandReply)
