"""The sources: what reads the streams for the views (all of them on the runtime's one
stream reader, services/runtime/stream.py, which follows again after a reconnect).

- ``EventFeed``: AOC_EVENTS, read **once** for every view: one ordered consumer, each
  event decoded once and handed to the views that asked for its type or its system.
- ``StreamSource``: one subject of another stream (the last heartbeat per engine, the
  analysts' verdicts), handed to one function.
- ``KeyedSource``: the same, with the message's subject (a KV bucket, whose key is
  the last subject token and whose deletes have no body).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import msgspec
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg

from contracts import subjects
from gateway.readmodels.base import View, decode_feed_event
from services.runtime import heap
from services.runtime.stream import Follower

log = structlog.get_logger()

MAX_ROUTES = 10_000  # (system, type) pairs whose handlers are cached
# event bytes applied between two freezes of the views' new state (services/runtime/heap.py):
# ~3,000 triage decisions, a young collection of a few ms
FREEZE_AFTER_BYTES = 2 * 1024 * 1024
Ensure = Callable[[], Awaitable[Any]]


class _FollowedSource:
    """What every source tells from the one Follower it reads with (none before start)."""

    follower: Follower | None
    start_seq: int

    @property
    def ready(self) -> bool:
        return self.follower is not None and self.follower.caught_up.is_set()

    @property
    def last_seq(self) -> int:
        return self.follower.last_seq if self.follower is not None else self.start_seq - 1

    async def stop(self) -> None:
        if self.follower is not None:
            await self.follower.stop()


class EventFeed(_FollowedSource):
    """Every event on AOC_EVENTS, in order, to every view that wants it."""

    name = "events"

    def __init__(
        self, nc: Client, views: list[View], *, ensure: Ensure, on_change: Callable[[], None]
    ) -> None:
        self.nc = nc
        self.views = views
        self._ensure = ensure  # the streams exist again (after a server restart)
        self._on_change = on_change
        self._routes: dict[tuple[str, str], tuple[tuple[str, Callable[..., None]], ...]] = {}
        self.follower: Follower | None = None
        self.start_seq = 1
        self.known_last = 0  # the highest sequence the stream is known to hold
        self.applied = 0  # events applied by this process (replay and live)
        self.undecodable = 0
        self.failed = 0  # view.apply raised (the event is skipped by that view only)
        self.started_at = 0.0
        self.caught_up_at: float | None = None
        self.growth = heap.Growth(FREEZE_AFTER_BYTES)

    # --- the protocol (ready, last_seq and stop: _FollowedSource) ------------------------

    @property
    def pending(self) -> int:
        return self.follower.pending if self.follower is not None else 0

    @property
    def lag(self) -> int:
        return max(self.known_last - self.last_seq, self.pending, 0)

    async def start(self) -> None:
        js = self.nc.jetstream()
        info = await js.stream_info(subjects.EVENTS_STREAM)
        self.known_last = info.state.last_seq
        self.started_at = time.monotonic()
        self.follower = Follower(
            self.nc,
            subjects.EVENTS_SUBJECTS,
            self._on_message,
            stream=subjects.EVENTS_STREAM,
            start_seq=self.start_seq,
            name="events",
            before_resubscribe=self._ensure,
        )
        await self.follower.start()

    # --- dispatch (the replay's hot path: a plain function, no awaits) ------------------

    def _on_message(self, seq: int, data: bytes, _stored: datetime) -> None:
        try:
            event = decode_feed_event(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.undecodable += 1
            return
        key = (event.system, event.type)
        handlers = self._routes.get(key)
        if handlers is None:
            handlers = tuple((v.name, v.apply) for v in self.views if v.wants(event.system, event.type))
            if len(self._routes) < MAX_ROUTES:
                self._routes[key] = handlers
        for name, apply in handlers:
            try:
                apply(seq, event, data)
            except Exception:  # one bad event must not stop a view
                self.failed += 1
                log.exception("readmodel.apply_failed", view=name, seq=seq, type=event.type)
        self.applied += 1
        self.growth.grew(len(data))
        if seq > self.known_last:
            self.known_last = seq
        if self.follower is not None and self.follower.caught_up.is_set():
            if self.caught_up_at is None:
                self.caught_up_at = time.monotonic()
            self._on_change()


class StreamSource(_FollowedSource):
    """One subject of a stream, to one function ``(seq, data, stored_at)``."""

    def __init__(
        self,
        name: str,
        nc: Client,
        subject: str,
        stream: str,
        apply: Callable[..., None],  # (seq, data, stored_at); a KeyedSource's (seq, subject, data)
        *,
        ensure: Ensure,
        on_change: Callable[[], None],
        last_per_subject: bool = False,
    ) -> None:
        self.name = name
        self.nc = nc
        self.subject = subject
        self.stream = stream
        self._apply = apply
        self._ensure = ensure
        self._on_change = on_change
        self._last_per_subject = last_per_subject
        self.start_seq = 1
        self.follower: Follower | None = None

    @property
    def lag(self) -> int:
        return self.follower.pending if self.follower is not None else 0

    async def start(self) -> None:
        await self._ensure()
        self.follower = self._follower()
        await self.follower.start()

    def _follower(self) -> Follower:
        return Follower(
            self.nc,
            self.subject,
            self._deliver,
            stream=self.stream,
            start_seq=self.start_seq,
            last_per_subject=self._last_per_subject,
            name=self.name,
            before_resubscribe=self._ensure,
        )

    def _deliver(self, seq: int, data: bytes, stored: datetime) -> None:
        self._apply_and_signal(self._apply, seq, data, stored)

    def _apply_and_signal(self, apply: Callable[..., None], seq: int, *message: Any) -> None:
        """One message to ``apply`` (a failure is logged: the source goes on), then the
        readers woken once the source has caught up."""
        try:
            apply(seq, *message)
        except Exception:
            log.exception("readmodel.apply_failed", source=self.name, seq=seq)
        if self.follower is not None and self.follower.caught_up.is_set():
            self._on_change()


class _KeyedFollower(Follower):
    """The runtime's Follower, handing the callback the message's subject too (a KV
    bucket's key; a delete is an empty body)."""

    async def _deliver(self, msg: Msg) -> None:
        meta = msg.metadata
        self._on_message(meta.sequence.stream, msg.subject, msg.data)
        self.last_seq = max(self.last_seq, meta.sequence.stream)
        self.pending = meta.num_pending
        if meta.num_pending == 0:
            self.caught_up.set()


class KeyedSource(StreamSource):
    """The newest message of every subject of a stream, with its subject: ``apply(seq,
    subject, data)``. Followed again from the newest ones after a reconnect (applying a
    value twice is harmless)."""

    def _follower(self) -> Follower:
        return _KeyedFollower(
            self.nc,
            self.subject,
            self._deliver_keyed,
            stream=self.stream,
            last_per_subject=True,
            name=self.name,
            before_resubscribe=self._ensure,
        )

    def _deliver_keyed(self, seq: int, subject: str, data: bytes) -> None:
        self._apply_and_signal(self._apply, seq, subject, data)
