"""Reading the streams: the one place every service does it.

- ``replay``: read a slice once (from a sequence or a time, up to a sequence or what is
  there now) and stop;
- ``Follower``: replay, then keep following live; after a reconnect it follows again
  from the last sequence it delivered (a restarted nats-server forgets ordered
  consumers, and nats-py does not recreate them);
- ``last_message``: the newest message of one subject (a direct get).

All of them read with an ordered push consumer and a callback: the fastest read path
nats-py has (NATS-NOTES.md, ~170k msgs/s). The callback gets ``(stream_seq, data,
stored_at)``; it may be a plain function (the fast path) or a coroutine function.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from contracts import subjects

log = structlog.get_logger()

OnMessage = Callable[[int, bytes, datetime], Any]
REPLAY_TIMEOUT = 120.0
RECONNECT_POLL_S = 0.5


class Stop:
    """Return ``Stop`` from a replay callback to end the replay after this message."""


def start_config(
    *, start_seq: int | None = None, start_time: datetime | None = None, last_per_subject: bool = False
) -> ConsumerConfig:
    if last_per_subject:
        return ConsumerConfig(deliver_policy=DeliverPolicy.LAST_PER_SUBJECT)
    if start_seq is not None and start_seq > 1:
        return ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq)
    if start_time is not None:
        return ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=start_time)
    return ConsumerConfig(deliver_policy=DeliverPolicy.ALL)


async def _nothing_to_deliver(sub: Any, delivered: int) -> bool:
    """True when the consumer has nothing pending and sent nothing we have not seen.
    Needed because a consumer over an empty range never calls back at all."""
    info = await sub.consumer_info()
    sent = info.delivered.consumer_seq if info.delivered is not None else 0
    return info.num_pending == 0 and sent <= delivered


class ReplayRange(TypedDict, total=False):
    """The keywords of ``replay`` that say which stored messages it reads, for the
    wrappers that pass them on (EngineContext.replay)."""

    stream: str | None
    start_seq: int | None
    start_time: datetime | None
    until_seq: int | None


async def replay(
    js: JetStreamContext,
    subject: str,
    on_message: OnMessage,
    *,
    stream: str | None = None,
    start_seq: int | None = None,
    start_time: datetime | None = None,
    until_seq: int | None = None,
    timeout: float = REPLAY_TIMEOUT,
) -> int:
    """Call ``on_message`` for every stored message on ``subject`` from ``start_seq`` /
    ``start_time`` (default: the start) up to ``until_seq`` (default: what is there
    now), in order, then stop. Returns how many messages it delivered.

    The end is the stream leader's newest sequence on ``subject``, not the consumer's
    ``num_pending``: in a cluster an ephemeral consumer may be placed on a replica still
    catching up (a member just back from a partition or a restart), whose ``num_pending``
    reaches 0 before it holds everything the leader acknowledged."""
    if start_seq is not None and until_seq is not None and start_seq > until_seq:
        return 0
    stream = stream or await js.find_stream_name_by_subject(subject)

    async def end_seq() -> int:
        newest = await last_message(js, subject, stream=stream)
        if newest is None:
            return 0
        if start_time is not None and newest.time is not None and newest.time < start_time:
            return 0  # nothing stored since start_time
        return newest.seq if until_seq is None else min(newest.seq, until_seq)

    end = await end_seq()
    if end == 0 or (start_seq is not None and start_seq > end):
        return 0
    done = asyncio.Event()
    count = 0
    delivered = 0  # the stream sequence of the last message delivered
    is_async = inspect.iscoroutinefunction(on_message)

    async def on_msg(msg: Msg) -> None:
        nonlocal count, delivered
        if done.is_set():
            return
        meta = msg.metadata
        seq = meta.sequence.stream
        if seq > end:
            done.set()
            return
        outcome = on_message(seq, msg.data, meta.timestamp)
        if is_async:
            outcome = await outcome
        count += 1
        delivered = seq
        if outcome is Stop or seq >= end:
            done.set()

    config = start_config(start_seq=start_seq, start_time=start_time)
    sub = await js.subscribe(subject, stream=stream, ordered_consumer=True, cb=on_msg, config=config)
    try:
        async with asyncio.timeout(timeout):
            while not done.is_set():
                # nothing (more) in range: the range was empty from the start time on, or
                # the newest message was deleted meanwhile; the leader says which
                if await _nothing_to_deliver(sub, count):
                    end = await end_seq()
                    if delivered >= end:
                        break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.25):
                        await done.wait()
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return count


@dataclass(frozen=True, slots=True)
class StoredMessage:
    seq: int
    data: bytes
    time: datetime | None
    headers: dict[str, str] | None


async def last_message(
    js: JetStreamContext, subject: str, *, stream: str = subjects.EVENTS_STREAM
) -> StoredMessage | None:
    """The newest message on ``subject``, or None when there is none."""
    try:
        raw = await js.get_last_msg(stream, subject)
    except NotFoundError:
        return None
    return StoredMessage(raw.seq or 0, raw.data or b"", raw.time, raw.headers)


class Follower:
    """Delivers every message on ``subject`` from ``start_seq`` on, then live ones, in
    order, each once (by stream sequence), across reconnects and server restarts.

    ``caught_up`` is set once the stored messages have been delivered; ``pending`` is
    how many the server says are still to come; ``last_seq`` the last one delivered.
    With ``last_per_subject`` it starts from the newest message of each subject (and
    after a reconnect starts there again: the callback must tolerate a repeat)."""

    def __init__(
        self,
        nc: Client,
        subject: str,
        on_message: OnMessage,
        *,
        stream: str | None = None,
        start_seq: int = 1,
        last_per_subject: bool = False,
        name: str = "",
        before_resubscribe: Callable[[], Awaitable[Any]] | None = None,
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.subject = subject
        self.stream = stream
        self.name = name or subject
        self.last_seq = start_seq - 1
        self.pending = 0
        self.caught_up = asyncio.Event()
        self._on_message = on_message
        self._async = inspect.iscoroutinefunction(on_message)
        self._last_per_subject = last_per_subject
        self._before_resubscribe = before_resubscribe  # e.g. make sure the stream exists again
        self._sub: Any = None
        self._watch: asyncio.Task[None] | None = None
        self.resubscriptions = 0

    async def start(self) -> Follower:
        await self._subscribe()
        self._watch = asyncio.create_task(self._follow_reconnects(), name=f"follow-{self.name}")
        return self

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch
            self._watch = None
        await self._unsubscribe()

    async def _subscribe(self) -> None:
        if self._last_per_subject:
            config = start_config(last_per_subject=True)
        else:
            config = start_config(start_seq=self.last_seq + 1)
        self._sub = await self.js.subscribe(
            self.subject, stream=self.stream, ordered_consumer=True, cb=self._deliver, config=config
        )
        if not self.caught_up.is_set() and await _nothing_to_deliver(self._sub, 0):
            self.caught_up.set()

    async def _unsubscribe(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def _deliver(self, msg: Msg) -> None:
        meta = msg.metadata
        seq = meta.sequence.stream
        if seq <= self.last_seq and not self._last_per_subject:
            return  # delivered before a resubscription
        outcome = self._on_message(seq, msg.data, meta.timestamp)
        if self._async:
            await outcome
        self.last_seq = max(self.last_seq, seq)
        self.pending = meta.num_pending
        if meta.num_pending == 0:
            self.caught_up.set()

    async def _follow_reconnects(self) -> None:
        seen = self.nc.stats["reconnects"]
        while True:
            await asyncio.sleep(RECONNECT_POLL_S)
            if self.nc.stats["reconnects"] == seen or not self.nc.is_connected:
                continue
            seen = self.nc.stats["reconnects"]
            try:
                if self._before_resubscribe is not None:
                    await self._before_resubscribe()
                await self._unsubscribe()
                await self._subscribe()
                self.resubscriptions += 1
                log.info("stream.resubscribed", follower=self.name, last_seq=self.last_seq)
            except Exception:
                log.exception("stream.resubscribe_failed", follower=self.name)
                seen -= 1  # try again on the next tick
