"""The gateway's views as projections of the stream.

``Projection`` is pure: it applies events and heartbeats in order and answers reads
from memory. ``ProjectionFeed`` wires it to JetStream: an ordered consumer with a
callback replays AOC_EVENTS from the start and then keeps following it live (the
fastest read path, NATS-NOTES.md); a second one reads the last heartbeat per engine.
Each applied event records its stream sequence, so applying one twice is a no-op.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from contracts import subjects
from contracts.events import EntryAnnotated, Heartbeat, LifecycleChanged, Summary, heartbeat_decoder
from contracts.systems import SYSTEMS

log = structlog.get_logger()


class ActivityRow(msgspec.Struct, array_like=True, gc=False):
    """One line of the activity log; compact (no GC header, tuple-like layout)."""

    seq: int
    time: str
    system: str
    type: str
    action: str
    detail: str
    result: str
    actor: str
    correlation_id: str
    id: str
    source: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "timestamp": self.time,
            "system": self.system,
            "action": self.action,
            "detail": self.detail,
            "result": self.result,
            "actor": self.actor,
            "type": self.type,
            "correlation_id": self.correlation_id,
            "id": self.id,
            "source": self.source,
        }


class _ProjectedEvent(msgspec.Struct):
    """The fields of an envelope the projection reads; time stays a string (no parse)."""

    id: str
    source: str
    type: str
    system: str
    time: str
    summary: Summary
    actor: str = "system"
    correlation_id: str = ""
    data: msgspec.Raw = msgspec.Raw(b"{}")


_decode_event = msgspec.json.Decoder(_ProjectedEvent).decode
_decode_lifecycle = msgspec.json.Decoder(LifecycleChanged).decode
_LIFECYCLE = LifecycleChanged.TYPE
_decode_annotation = msgspec.json.Decoder(EntryAnnotated).decode
_ANNOTATED = EntryAnnotated.TYPE


@dataclass(slots=True)
class Annotation:
    """One operator's tags and comment on an entry, from an entry_annotated event."""

    id: str  # the entry_annotated event's id
    seq: int
    time: str
    actor: str
    tags: list[str]
    comment: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "seq": self.seq,
            "time": self.time,
            "actor": self.actor,
            "tags": self.tags,
            "comment": self.comment,
        }


@dataclass(slots=True)
class LifecycleView:
    seq: int
    time: str
    state: str
    desired: str
    reason: str


@dataclass(slots=True)
class CrashView:
    """The last crash of an engine: the launcher's process_crashed or the engine's own
    engine_recovered (the dashboard says "restarted N s ago after a crash")."""

    seq: int
    time: str
    type: str
    detail: str


CRASH_TYPES = frozenset({"process_crashed", "engine_recovered"})


@dataclass(slots=True)
class HeartbeatView:
    beat: Heartbeat
    received: datetime  # the stream's timestamp: one clock for every engine


class Projection:
    def __init__(self, window: int = 100_000) -> None:
        self.window = window
        self.rows: list[ActivityRow] = []
        self.applied_seq = 0
        self.lifecycle: dict[str, LifecycleView] = {}
        self.heartbeats: dict[str, HeartbeatView] = {}
        self.crashes: dict[str, CrashView] = {}
        self.version = 0
        self.undecodable = 0
        self._trim_at = window + max(window // 10, 1)
        # entry id -> its annotations, in stream order (kept for the rows in memory)
        self.annotations: dict[str, list[Annotation]] = {}

    # --- applying -------------------------------------------------------------------

    def apply(self, seq: int, data: bytes) -> None:
        if seq <= self.applied_seq:
            return  # replayed twice: already in the view
        try:
            event = _decode_event(data)
        except msgspec.DecodeError:
            self.undecodable += 1
            self.applied_seq = seq
            return
        summary = event.summary
        self.rows.append(
            ActivityRow(
                seq,
                event.time,
                event.system,
                event.type,
                summary.action,
                summary.detail,
                summary.result,
                event.actor,
                event.correlation_id,
                event.id,
                event.source,
            )
        )
        if len(self.rows) > self._trim_at:
            dropped = len(self.rows) - self.window
            if self.annotations:
                for old in self.rows[:dropped]:
                    self.annotations.pop(old.id, None)
            del self.rows[:dropped]
        if event.type == _ANNOTATED:
            self._annotate(seq, event)
        if event.type == _LIFECYCLE and event.system in SYSTEMS:
            change = _decode_lifecycle(event.data)
            self.lifecycle[event.system] = LifecycleView(
                seq, event.time, change.state, change.desired, change.reason
            )
        elif event.type in CRASH_TYPES and event.system in SYSTEMS:
            self.crashes[event.system] = CrashView(seq, event.time, event.type, summary.detail)
        self.applied_seq = seq
        self.version += 1

    def _annotate(self, seq: int, event: _ProjectedEvent) -> None:
        try:
            note = _decode_annotation(event.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.undecodable += 1
            return
        entry = Annotation(event.id, seq, event.time, event.actor, list(note.tags), note.comment)
        self.annotations.setdefault(note.entry_id, []).append(entry)

    def apply_heartbeat(self, data: bytes, received: datetime) -> None:
        try:
            beat = heartbeat_decoder.decode(data)
        except msgspec.DecodeError:
            self.undecodable += 1
            return
        current = self.heartbeats.get(beat.system)
        if current is not None and current.beat.boot_id == beat.boot_id and current.beat.seq >= beat.seq:
            return  # an older snapshot arriving late
        self.heartbeats[beat.system] = HeartbeatView(beat, received)
        self.version += 1

    # --- reading ----------------------------------------------------------------------

    def activity(
        self,
        *,
        limit: int,
        before: int | None = None,
        system: str | None = None,
        result: str | None = None,
        actor: str | None = None,
        text: str | None = None,
        since: str | None = None,
        until: str | None = None,
        tag: str | None = None,
    ) -> list[ActivityRow]:
        """Newest first; ``before`` is a stream-sequence cursor (exclusive)."""
        end = len(self.rows) if before is None else bisect.bisect_left(self.rows, before, key=_seq)
        needle = text.lower() if text else None
        found: list[ActivityRow] = []
        for row in self._backwards(end):
            if since is not None and row.time < since:
                break  # rows are in stream order, so everything older is out too
            if (
                (system is None or row.system == system)
                and (result is None or row.result == result)
                and (actor is None or row.actor == actor)
                and (until is None or row.time <= until)
                and (needle is None or needle in row.detail.lower() or needle in row.action.lower())
                and (tag is None or tag in self.tags_of(row.id))
            ):
                found.append(row)
                if len(found) >= limit:
                    break
        return found

    def tags_of(self, entry_id: str) -> list[str]:
        """Every tag given to an entry, first use first, once each."""
        notes = self.annotations.get(entry_id)
        if not notes:
            return []
        return list(dict.fromkeys(tag for note in notes for tag in note.tags))

    def entry(self, row: ActivityRow) -> dict[str, Any]:
        """A row as the API shows it: with its tags and annotations."""
        notes = self.annotations.get(row.id, ())
        return {**row.as_dict(), "tags": self.tags_of(row.id), "annotations": [n.as_dict() for n in notes]}

    def find(self, entry_id: str) -> ActivityRow | None:
        """The row with this event id (newest first; a POST path, never the hot one)."""
        for row in self._backwards(len(self.rows)):
            if row.id == entry_id:
                return row
        return None

    def _backwards(self, end: int) -> Iterator[ActivityRow]:
        rows = self.rows
        for index in range(end - 1, -1, -1):
            yield rows[index]

    @property
    def first_seq(self) -> int:
        return self.rows[0].seq if self.rows else 0


def _seq(row: ActivityRow) -> int:
    return row.seq


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


class ProjectionFeed:
    """Keeps a Projection in step with the streams and wakes readers on change."""

    def __init__(self, nc: Client, projection: Projection) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.projection = projection
        self.replayed = asyncio.Event()
        self.pending = 0
        self._changed = ChangeSignal()
        self._subs: list[Any] = []

    async def start(self) -> None:
        info = await self.js.stream_info(subjects.EVENTS_STREAM)
        if info.state.last_seq == 0 or info.state.messages == 0:
            self.replayed.set()
        projection = self.projection
        apply = projection.apply

        async def on_event(msg: Msg) -> None:
            meta = msg.metadata
            apply(meta.sequence.stream, msg.data)
            self.pending = meta.num_pending
            if meta.num_pending == 0:
                self.replayed.set()
                self.notify()
            elif self.replayed.is_set():
                self.notify()

        async def on_heartbeat(msg: Msg) -> None:
            projection.apply_heartbeat(msg.data, msg.metadata.timestamp)
            self.notify()

        start = projection.applied_seq + 1
        config = (
            ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start)
            if start > 1
            else ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        )
        self._subs.append(
            await self.js.subscribe(
                subjects.EVENTS_SUBJECTS, ordered_consumer=True, cb=on_event, config=config
            )
        )
        self._subs.append(
            await self.js.subscribe(
                subjects.HEARTBEATS_SUBJECTS,
                ordered_consumer=True,
                cb=on_heartbeat,
                config=ConsumerConfig(deliver_policy=DeliverPolicy.LAST_PER_SUBJECT),
            )
        )

    async def resubscribe(self) -> None:
        """Follow again from the last applied event (after the server lost our consumers)."""
        await self.stop()
        await self.start()

    async def stop(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()

    def notify(self) -> None:
        self._changed.notify()

    async def wait_changed(self, timeout: float) -> bool:
        return await self._changed.wait(timeout)
