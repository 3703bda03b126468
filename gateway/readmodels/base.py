"""The read-model protocol, and the follower that feeds a pure view from AOC_EVENTS.

A read model replays the stream from the start (or from where it stopped, after a
reconnect), then keeps following it live on the same ordered consumer with a callback
(the fast read path, NATS-NOTES.md). ``ready`` is set once the replay has caught up;
``lag`` counts the events the stream holds that the view has not applied yet.

The view itself does no I/O: ``apply(seq, event_type, data)`` for each event it asked
for, ``applied_seq`` for the last stream sequence it has seen (applying a sequence twice
is a no-op, so a resubscription may overlap).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any, Protocol

import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from contracts import subjects
from gateway.projections import ChangeSignal

log = structlog.get_logger()


class ReadModel(Protocol):
    name: str
    ready: asyncio.Event  # set once its replay has caught up with the stream

    async def start(self, js: JetStreamContext) -> None: ...  # replay, then follow live

    async def stop(self) -> None: ...

    @property
    def lag(self) -> int: ...  # events known to the stream but not applied yet


class View(Protocol):
    applied_seq: int

    def apply(self, seq: int, event_type: str, data: bytes) -> None: ...


class FollowedView:
    """A ReadModel for one pure ``View``, fed the event types it names (by the last token
    of the subject, aoc.evt.<system>.<type>, so other events cost no decoding)."""

    def __init__(self, name: str, view: View, event_types: frozenset[str]) -> None:
        self.name = name
        self.view = view
        self.event_types = event_types
        self.ready = asyncio.Event()
        self._known_last = 0
        self._sub: Any = None
        self._changed = ChangeSignal()

    @property
    def lag(self) -> int:
        return max(self._known_last - self.view.applied_seq, 0)

    async def start(self, js: JetStreamContext) -> None:
        info = await js.stream_info(subjects.EVENTS_STREAM)
        self._known_last = max(self._known_last, info.state.last_seq)
        view, wanted = self.view, self.event_types
        if info.state.messages == 0 or view.applied_seq >= info.state.last_seq:
            self.ready.set()

        async def on_event(msg: Msg) -> None:
            meta = msg.metadata
            seq = meta.sequence.stream
            if seq > view.applied_seq:
                event_type = msg.subject.rsplit(".", 1)[-1]
                if event_type in wanted:
                    try:
                        view.apply(seq, event_type, msg.data)
                    except Exception:  # one bad event must not stop the view
                        log.exception("readmodel.apply_failed", model=self.name, seq=seq)
                view.applied_seq = max(view.applied_seq, seq)
            self._known_last = max(self._known_last, seq + meta.num_pending)
            if meta.num_pending == 0:
                self.ready.set()
            if self.ready.is_set():
                self._changed.notify()

        start = view.applied_seq + 1
        config = (
            ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start)
            if start > 1
            else ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        )
        self._sub = await js.subscribe(
            subjects.EVENTS_SUBJECTS, ordered_consumer=True, cb=on_event, config=config
        )

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def wait_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Read-your-writes: wait (bounded) until ``condition()`` holds on the view."""
        deadline = time.monotonic() + timeout
        while not condition():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await self._changed.wait(left)
        return True
