"""Command ids: a command that carries one acts once.

Handled ids are kept in the KV bucket ``aoc_command_ids`` (TTL = the duplicate window),
so a repeat after an engine restart is still recognised, and the last replies in
memory, so a repeat while the engine runs gets the original reply."""

from __future__ import annotations

from collections import OrderedDict

import msgspec
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts.commands import CommandReply
from services.runtime.replies import Replies

KEEP_REPLIES = 1000


class CommandIds:
    def __init__(self, kv: KeyValue, slug: str, replies: Replies) -> None:
        self._kv = kv
        self._slug = slug
        self._replies = replies
        self._recent: OrderedDict[str, CommandReply] = OrderedDict()

    async def seen_before(self, command_id: str) -> CommandReply | None:
        """The reply to give a repeat of ``command_id``, or None (and the id is now taken)."""
        cached = self._recent.get(command_id)
        if cached is not None:
            return msgspec.structs.replace(cached, duplicate=True, changed=False)
        try:
            await self._kv.create(f"{self._slug}.{command_id}", b"1")
        except KeyWrongLastSequenceError:
            return self._replies.make(
                "", f"command {command_id} was already handled", command_id=command_id, duplicate=True
            )
        return None

    def remember(self, command_id: str, reply: CommandReply) -> None:
        self._recent[command_id] = reply
        while len(self._recent) > KEEP_REPLIES:
            self._recent.popitem(last=False)
