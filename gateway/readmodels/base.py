"""What every read model shares: the protocol, the event as views see it, and the signal
that wakes readers when a view changes.

Two kinds of read model, one protocol (``ReadModel``: ``name``, ``ready``, ``lag``,
``start``, ``stop``):

- **sources** do the I/O: ``EventFeed`` (AOC_EVENTS, read once for every view),
  ``StreamSource`` (AOC_HEARTBEATS, AOC_FEEDBACK) and ``KvMirror`` (advisory buckets);
- **views** are pure: they fold what their sources hand them (``apply``) and answer
  reads from memory. A view's ``ready`` and ``lag`` are those of the sources that feed
  it; starting and stopping a view is starting and stopping its sources.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol

import msgspec

from contracts.events import Summary


class ReadModel(Protocol):
    name: str

    @property
    def ready(self) -> bool: ...  # replayed (or loaded) up to what the stream held at start

    @property
    def lag(self) -> int: ...  # messages the stream holds that are not applied yet

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class FeedEvent(msgspec.Struct):
    """The envelope fields the views read, decoded once per event for all of them; the
    time stays the string the producer wrote (no parse on the replay path)."""

    id: str
    source: str
    type: str
    system: str
    time: str
    summary: Summary
    actor: str = "system"
    correlation_id: str = ""
    schema_version: int = 1
    data: msgspec.Raw = msgspec.Raw(b"{}")
    epoch: int = 0
    instance: str = ""


decode_feed_event = msgspec.json.Decoder(FeedEvent).decode


class Fed:
    """Something the read-model sources feed: ready when all of them are, as far behind as
    the furthest."""

    def __init__(self) -> None:
        self._sources: list[ReadModel] = []

    def fed_by(self, *sources: ReadModel) -> None:
        self._sources.extend(sources)

    @property
    def sources(self) -> Sequence[ReadModel]:
        return self._sources

    @property
    def ready(self) -> bool:
        return all(source.ready for source in self._sources)

    @property
    def lag(self) -> int:
        return max((source.lag for source in self._sources), default=0)


class View(Fed):
    """A pure view fed by sources. Subclasses name the events they fold:
    ``event_types`` (by type, the last subject token) and/or ``systems`` (every event
    of those systems); both None = every event."""

    name: ClassVar[str] = ""
    event_types: ClassVar[frozenset[str] | None] = None
    systems: ClassVar[frozenset[str] | None] = None

    def wants(self, system: str, event_type: str) -> bool:
        types, systems = self.event_types, self.systems
        if types is None and systems is None:
            return True
        return (types is not None and event_type in types) or (systems is not None and system in systems)

    def apply(self, seq: int, event: FeedEvent, raw: bytes) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class ChangeSignal:
    """Wakes everyone waiting for a view to change (read-your-writes, the SSE stream).
    Each change swaps in a fresh event, so no waiter can clear another's wake-up."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> bool:
        """True when a change came within ``timeout`` seconds."""
        event = self._event
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(timeout, 0)):
                await event.wait()
            return True
        return False

    async def until(self, condition: Callable[[], Any], timeout: float) -> Any:
        """The first truthy ``condition()`` within ``timeout`` seconds (checked at every
        change), else its last (falsy) value."""
        deadline = time.monotonic() + timeout
        while True:
            found = condition()
            left = deadline - time.monotonic()
            if found or left <= 0:
                return found
            await self.wait(left)
