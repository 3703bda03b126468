"""EngineContext: everything an engine does on the bus, and nothing more.

An engine never holds the raw NATS connection. Through its context it publishes its
events (stamped with its instance and lease epoch, and refused once the instance is no
longer active: fencing), reads the streams (``services/runtime/stream.py``), opens what
the contracts declare (streams, KV buckets, object stores, pull consumers), asks and
answers requests, and runs cycles. So the runtime can fence, stamp and observe every
write in one place, and an engine's story stays about its domain.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar, Unpack

import msgspec
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, ConsumerInfo, PubAck, StreamInfo, StreamState
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from contracts import subjects
from contracts.events import Envelope, Summary
from contracts.settings import Settings
from contracts.streams import ensure_bucket, ensure_stream
from services.runtime.bus import WriteBatch, publish_with_retry
from services.runtime.desired import desired_of
from services.runtime.engine import CycleOutcome, Loop
from services.runtime.stream import Follower, OnMessage, ReplayRange, StoredMessage, last_message, replay

if TYPE_CHECKING:
    from services.runtime.host import EngineHost

T = TypeVar("T")


class EventMeta(TypedDict, total=False):
    """The keywords every way of writing an event takes; EngineHost.new_event gives their
    defaults (the engine as actor, no correlation, a fresh id)."""

    actor: str | None
    correlation_id: str
    event_id: str | None


class Fenced(Exception):
    """This instance is not the active one (any more): it must not write as the engine."""


class EngineContext:
    def __init__(self, host: EngineHost) -> None:
        self._host = host

    @property
    def slug(self) -> str:
        return self._host.slug

    @property
    def settings(self) -> Settings:
        return self._host.settings

    @property
    def log(self) -> Any:
        return self._host.log

    @property
    def instance(self) -> str:
        return self._host.instance

    @property
    def boot_id(self) -> str:
        """One per process: with it, an event id is unique per start of the engine."""
        return self._host.boot_id

    @property
    def running(self) -> bool:
        """The engine is running here (this instance is active and started)."""
        return self._host.lifecycle.state == "running" and self._host.role == "active"

    @property
    def state(self) -> str:
        return str(self._host.lifecycle.state)

    # --- events ---------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """This instance holds the engine's lease (or is coming up with it)."""
        return self._host.role in ("active", "activating")

    def _check_active(self, shared: bool) -> None:
        # ``shared``: an event of work every instance does (an ``everywhere`` loop's)
        if shared:
            return
        if not self.active:
            raise Fenced(f"{self.instance} is {self._host.role}: it writes nothing as {self.slug}")
        if self._host.role == "active" and not self._host.keeper.fresh():
            # (while activating the keeper waits for the rebuild; it renews at its end)
            raise Fenced(f"{self.instance} has not renewed its lease in time: it writes nothing yet")

    def new_event(self, payload: msgspec.Struct, summary: Summary, **meta: Unpack[EventMeta]) -> Envelope:
        return self._host.new_event(payload, summary, **meta)

    async def publish(
        self, payload: msgspec.Struct, summary: Summary, *, shared: bool = False, **meta: Unpack[EventMeta]
    ) -> Envelope:
        """Publish one event of this engine (stream ack, retries, dedup by its id). Only
        the active instance may, except for ``shared`` work (an ``everywhere`` loop's)."""
        self._check_active(shared)
        return await self._host.publish(payload, summary, **meta)

    async def publish_event(self, event: Envelope, *, shared: bool = False) -> PubAck:
        """Publish an envelope built with ``new_event`` (its ack tells its sequence)."""
        self._check_active(shared)
        return await self._host.publisher.publish(event)

    def batch(self, *, shared: bool = False) -> WriteBatch:
        """Events sent back to back and confirmed together (one round trip for a burst)."""
        self._check_active(shared)
        return self._host.publisher.batch()

    async def enqueue(
        self,
        subject: str,
        payload: bytes,
        *,
        msg_id: str | None,
        headers: dict[str, str] | None = None,
        deadline: float = 5.0,
    ) -> PubAck:
        """Put a message on a work queue or input stream (not an event of this engine):
        acked, retried, deduplicated by ``msg_id``."""
        return await publish_with_retry(
            self._js, subject, payload, msg_id=msg_id, deadline=deadline, extra_headers=headers
        )

    # --- reading the streams --------------------------------------------------------------

    async def replay(self, subject: str, on_message: OnMessage, **where: Unpack[ReplayRange]) -> int:
        return await replay(self._js, subject, on_message, **where)

    async def last(self, subject: str, *, stream: str = subjects.EVENTS_STREAM) -> StoredMessage | None:
        return await last_message(self._js, subject, stream=stream)

    def follower(self, subject: str, on_message: OnMessage, **options: Any) -> Follower:
        """Replay then follow live, across reconnects (start it with ``await f.start()``)."""
        return Follower(self._nc, subject, on_message, **options)

    # --- what the contracts declare -------------------------------------------------------

    async def declare(self, ensure: Callable[[JetStreamContext, Settings], Awaitable[T]]) -> T:
        """Open (creating if need be) what a contract's ``ensure_*`` declares."""
        return await ensure(self._js, self.settings)

    async def bucket(self, config: Any) -> KeyValue:
        return await ensure_bucket(self._js, config)

    async def object_store(self, config: Any) -> Any:
        try:
            return await self._js.object_store(config.bucket)
        except (BucketNotFoundError, NotFoundError):
            # nats-py overwrites config.bucket with its first argument: pass both
            return await self._js.create_object_store(config.bucket, config=config)

    async def stream(self, config: Any) -> None:
        await ensure_stream(self._js, config)

    async def desired_of(self, slug: str) -> str:
        """Another engine's durable desired state (its newest lifecycle event)."""
        return str(await desired_of(self._js, slug, autostart=self.settings.autostart))

    async def existing_bucket(self, name: str) -> KeyValue:
        """A bucket another service declares (raises when it does not exist)."""
        return await self._js.key_value(name)

    async def stream_state(self, stream: str) -> StreamState:
        return (await self._js.stream_info(stream)).state

    async def streams(self) -> list[StreamInfo]:
        return await self._js.streams_info()

    async def consumers(self, stream: str) -> list[ConsumerInfo]:
        return await self._js.consumers_info(stream)

    async def pull(
        self, subject: str, *, durable: str, stream: str, config: ConsumerConfig | None = None
    ) -> Any:
        """A durable pull consumer (a work queue's, or a durable watch of events)."""
        return await self._js.pull_subscribe(subject, durable=durable, stream=stream, config=config)

    async def subscribe_stream(
        self, subject: str, cb: Callable[[Msg], Awaitable[None]], **options: Any
    ) -> Any:
        """An ordered push consumer with a callback (``config=`` for where to start)."""
        return await self._js.subscribe(subject, ordered_consumer=True, cb=cb, **options)

    # --- requests -------------------------------------------------------------------------

    async def request(self, subject: str, payload: bytes = b"", *, timeout: float) -> Msg:
        return await self._nc.request(subject, payload, timeout=timeout)

    async def serve(
        self, subject: str, handler: Callable[[Msg], Awaitable[None]], *, queue: str = ""
    ) -> Subscription:
        """Answer requests (or take messages) on a core NATS subject."""
        return await self._nc.subscribe(subject, queue=queue, cb=handler)

    # --- cycles -----------------------------------------------------------------------------

    async def run_cycle(
        self,
        loop: Loop,
        *,
        run: Callable[[], Awaitable[CycleOutcome]] | None = None,
        actor: str | None = None,
        correlation_id: str = "",
    ) -> CycleOutcome:
        """Run one cycle now (counted and recorded like a scheduled one)."""
        return await self._host.run_cycle(loop, run=run, actor=actor, correlation_id=correlation_id)

    async def until_stopping(self, idle_wait: Awaitable[T]) -> T:
        """An idle wait (a long-poll with nothing in hand) that a stop may abandon."""
        return await self._host.until_stopping(idle_wait)

    # --- the connection stays inside ---------------------------------------------------------

    @property
    def _js(self) -> JetStreamContext:
        return self._host.js

    @property
    def _nc(self) -> Any:
        return self._host.nc
