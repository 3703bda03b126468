"""The desired state of an engine (running | stopped), kept in KV so an engine an
operator stopped comes back stopped after a crash."""

from __future__ import annotations

import msgspec
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from contracts.events import utcnow
from services.runtime.bus import WriteBatch
from services.runtime.lifecycle import State


class DesiredState:
    def __init__(self, kv: KeyValue, bucket: str, slug: str, *, autostart: bool) -> None:
        self._kv = kv
        self._slug = slug
        self._subject = f"$KV.{bucket}.{slug}"  # a KV put is a publish to $KV.<bucket>.<key>
        self._autostart = autostart
        self.value = State.RUNNING

    async def load(self) -> State:
        try:
            entry = await self._kv.get(self._slug)
        except KeyNotFoundError:
            self.value = State.RUNNING if self._autostart else State.STOPPED
            return self.value
        record = msgspec.json.decode(entry.value or b"{}")
        self.value = State(record.get("desired", State.RUNNING))
        return self.value

    async def record(
        self, desired: State, batch: WriteBatch, *, actor: str, reason: str, command_id: str | None
    ) -> None:
        """Send the new desired state in ``batch`` (it shares the command's round trip)."""
        self.value = desired
        record = {
            "desired": desired,
            "actor": actor,
            "reason": reason,
            "command_id": command_id,
            "time": utcnow().isoformat(),
        }
        await batch.send(self._subject, msgspec.json.encode(record))
