"""Connecting to NATS and publishing events durably.

Every event is published to JetStream and waits for the stream's ack; on failure it
is retried with backoff until ``publish_deadline``. The event id is sent as
``Nats-Msg-Id``, so a retry after a lost ack is stored once (duplicate window).
"""

from __future__ import annotations

import asyncio
import random
import time

import nats
import structlog
from nats.aio.client import Client
from nats.errors import ConnectionClosedError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import NoStreamResponseError, ServiceUnavailableError

from contracts import subjects
from contracts.events import Envelope, Heartbeat, encode
from contracts.settings import Settings

log = structlog.get_logger()

RETRYABLE = (
    NatsTimeoutError,
    TimeoutError,
    NoRespondersError,
    NoStreamResponseError,
    ServiceUnavailableError,
    ConnectionClosedError,
)


async def connect(settings: Settings, name: str) -> Client:
    async def on_error(exc: Exception) -> None:
        log.warning("nats.error", error=str(exc))

    async def on_disconnect() -> None:
        log.warning("nats.disconnected")

    async def on_reconnect() -> None:
        log.info("nats.reconnected")

    return await nats.connect(
        settings.effective_nats_url.split(","),  # NATS_URL may list a whole cluster
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
    )


class EventPublisher:
    """Publishes envelopes to AOC_EVENTS with ack, retry and dedup.

    ``published`` keeps the last envelopes it stored, so tests can inspect what a
    service said without another consumer.
    """

    def __init__(self, js: JetStreamContext, *, deadline: float = 30.0, keep: int = 200) -> None:
        self._js = js
        self._deadline = deadline
        self._keep = keep
        self.published: list[tuple[Envelope, PubAck]] = []

    async def publish(self, event: Envelope) -> PubAck:
        ack = await publish_with_retry(
            self._js,
            subjects.evt(event.system, event.type),
            encode(event),
            msg_id=event.id,
            deadline=self._deadline,
        )
        self.published.append((event, ack))
        del self.published[: -self._keep]
        return ack

    async def heartbeat(self, beat: Heartbeat) -> None:
        # a lost heartbeat is replaced by the next one: one try, no retry
        try:
            await self._js.publish(subjects.hb(beat.system), encode(beat), timeout=1.0)
        except RETRYABLE as exc:
            log.warning("heartbeat.not_stored", error=type(exc).__name__)


async def publish_with_retry(
    js: JetStreamContext, subject: str, payload: bytes, *, msg_id: str, deadline: float = 30.0
) -> PubAck:
    headers = {"Nats-Msg-Id": msg_id}
    give_up = time.monotonic() + deadline
    delay = 0.05
    while True:
        try:
            return await js.publish(subject, payload, headers=headers, timeout=2.0)
        except RETRYABLE as exc:
            if time.monotonic() + delay > give_up:
                log.error("event.publish_failed", subject=subject, msg_id=msg_id, error=type(exc).__name__)
                raise
            log.warning("event.publish_retry", subject=subject, error=type(exc).__name__, delay=delay)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)
