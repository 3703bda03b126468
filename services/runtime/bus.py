"""Connecting to NATS and publishing events durably.

Every event is published to JetStream and waits for the stream's ack; on failure it
is retried with backoff until ``publish_deadline``. The event id is sent as
``Nats-Msg-Id``, so a retry after a lost ack is stored once (duplicate window).

Credentials: ``AOC_NATS_USER`` with ``AOC_NATS_PASSWORD`` or ``AOC_NATS_PASSWORD_FILE``
when set (compose, a managed cluster); otherwise the file the embedded secure server
generated for this service (``<credentials dir>/<service>.json``), used only when it was
written for the server we connect to; otherwise none (a plain server).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import nats
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError, NoRespondersError, SlowConsumerError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import APIError, BadRequestError, NoStreamResponseError, ServiceUnavailableError
from nats.js.kv import KeyValue

from contracts import subjects
from contracts.events import Envelope, Heartbeat, encode
from contracts.settings import Settings
from contracts.streams import ensure_all
from services.runtime.drops import DropCounter

log = structlog.get_logger()
T = TypeVar("T")

RETRYABLE = (
    NatsTimeoutError,
    TimeoutError,
    NoRespondersError,
    NoStreamResponseError,
    ServiceUnavailableError,
    ConnectionClosedError,
)


def inbox_prefix(user: str) -> str:
    """Each NATS user gets its own inbox namespace on the secure server, so no service
    can read the replies meant for another."""
    return f"_INBOX_{user}"


@dataclass(frozen=True)
class NatsCredentials:
    user: str
    password: str


def service_identity(name: str) -> str:
    """Connection name -> NATS user: 'aoc-soc-cycle' -> 'soc-cycle', 'aoc-gateway' -> 'gateway'."""
    return name.removeprefix("aoc-")


def nats_credentials(settings: Settings, identity: str) -> NatsCredentials | None:
    if settings.nats_user:
        if settings.nats_password_file is not None:
            password = settings.nats_password_file.read_text().strip()
        elif settings.nats_password is not None:
            password = settings.nats_password.get_secret_value()
        else:
            raise ValueError("AOC_NATS_USER needs AOC_NATS_PASSWORD or AOC_NATS_PASSWORD_FILE")
        return NatsCredentials(settings.nats_user, password)
    path = settings.effective_nats_credentials_dir / f"{identity}.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    # files left by an earlier embedded server mean nothing to another server
    if record.get("url") != settings.effective_nats_url:
        return None
    return NatsCredentials(record["user"], record["password"])


def connect_options(settings: Settings, identity: str) -> dict[str, Any]:
    """Server list and credentials for nats.connect, for callers that tune the rest."""
    # a cluster is a list: nats-py takes a comma-separated string for one URL
    options: dict[str, Any] = {"servers": settings.nats_servers}
    credentials = nats_credentials(settings, identity)
    if credentials is not None:
        options.update(
            user=credentials.user, password=credentials.password, inbox_prefix=inbox_prefix(credentials.user)
        )
    return options


async def connect(
    settings: Settings,
    name: str,
    *,
    on_slow_consumer: Callable[[SlowConsumerError], Awaitable[None]] | None = None,
) -> Client:
    """``on_slow_consumer`` is told of every message a subscription dropped; it runs in
    the client's read loop, so it must not wait on the server (schedule publishes)."""
    identity = service_identity(name)
    options = connect_options(settings, identity)
    drops = DropCounter()

    async def on_error(exc: Exception) -> None:
        if isinstance(exc, SlowConsumerError):
            if on_slow_consumer is not None:
                await on_slow_consumer(exc)
                return
            # one call per dropped message: a line per drop would flood the log
            subscription = getattr(exc.sub, "subject", "") or "?"
            covered = drops.note(subscription, exc.subject, time.monotonic())
            if covered:
                log.warning(
                    "nats.slow_consumer",
                    subscription=subscription,
                    dropped=covered,
                    dropped_total=drops.total,
                )
            return
        text = str(exc)
        if "permissions violation" in text.lower():
            # a subject this service needs is missing from services/launcher/natsauth.py
            log.error("nats.permission_denied", error=text, user=options.get("user"))
        else:
            log.warning("nats.error", error=text)

    async def on_disconnect() -> None:
        log.warning("nats.disconnected")

    async def on_reconnect() -> None:
        log.info("nats.reconnected")

    if "user" in options:
        log.info("nats.credentials", user=options["user"])
    nc = await nats.connect(
        **options,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
    )
    await barrier(nc)
    return nc


async def barrier(nc: Client) -> None:
    """Return once the server has processed everything this connection sent before.

    nats-py 2.16's ``flush()`` writes its PING straight to the socket, ahead of the
    commands still queued for its flusher task. So a SUB sent just before can reach the
    server after the PONG came back, and a message another connection publishes then is
    not delivered to it (~1 in 10 here, on a plain server as on the secure one). The
    first flush kicks the queue out; the second PING goes after it, and its PONG proves it.
    """
    await nc.flush()
    await nc.flush()


class EventPublisher:
    """Publishes envelopes to AOC_EVENTS with ack, retry and dedup.

    ``published`` keeps the last envelopes it stored, so tests can inspect what a
    service said without another consumer.
    """

    def __init__(self, js: JetStreamContext, *, deadline: float = 30.0, keep: int = 200) -> None:
        self._js = js
        self.js = js
        self._deadline = deadline
        self._keep = keep
        self.published: list[tuple[Envelope, PubAck]] = []
        self._acks = AckInbox(js._nc)  # the context's connection (nats-py keeps no public handle)

    async def publish(self, event: Envelope, *, after_seq: int | None = None) -> PubAck:
        """Store ``event``. With ``after_seq``, only if the newest event on its subject is
        still at that sequence (0: none yet); else ``Superseded`` (fencing)."""
        ack = await publish_with_retry(
            self._js,
            subjects.evt(event.system, event.type),
            encode(event),
            msg_id=event.id,
            deadline=self._deadline,
            after_seq=after_seq,
        )
        self._stored(event, ack)
        return ack

    def batch(self) -> WriteBatch:
        """Writes sent back to back and confirmed together (see WriteBatch)."""
        return WriteBatch(self._js, self._acks, deadline=self._deadline, on_stored=self._stored)

    def _stored(self, event: Envelope, ack: PubAck) -> None:
        self.published.append((event, ack))
        del self.published[: -self._keep]

    async def heartbeat(self, beat: Heartbeat) -> None:
        # a lost heartbeat is replaced by the next one: one try, no retry
        try:
            subject = subjects.hb(beat.system, None if beat.role == "active" else beat.instance)
            await self._js.publish(subject, encode(beat), timeout=1.0)
        except RETRYABLE as exc:
            log.warning("heartbeat.not_stored", error=type(exc).__name__)


class _AckReply(msgspec.Struct):
    stream: str = ""
    seq: int = 0
    domain: str | None = None
    duplicate: bool = False
    error: dict[str, Any] | None = None


_ack_reply = msgspec.json.Decoder(_AckReply)


class AckInbox:
    """JetStream writes whose acks come back to one wildcard inbox of this connection.

    nats-py's ``publish_async`` does the same, at about twice the client CPU per write
    here (a random token from the OS, a semaphore, a done callback, the ack parsed by
    ``json`` into a dataclass): 39 against 22 µs per write (bench/acks.py). A batch of
    SOAR's playbook runs pays that per run.
    The subscription is the connection's: nats-py renews it after a reconnect. A write
    whose ack does not come is the caller's to abandon (``forget``) and send again."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._prefix = ""
        self._sent = 0
        self._pending: dict[str, asyncio.Future[PubAck]] = {}
        self._subscribing = asyncio.Lock()  # the first writes of a batch may race to subscribe

    async def send(
        self, subject: str, payload: bytes, headers: dict[str, str] | None
    ) -> tuple[str, asyncio.Future[PubAck]]:
        """Publish with this inbox as the reply subject; the future resolves with the ack."""
        if not self._prefix:
            await self._subscribe()
        self._sent += 1
        reply = f"{self._prefix}{self._sent}"
        future: asyncio.Future[PubAck] = asyncio.get_running_loop().create_future()
        self._pending[reply] = future
        try:
            await self._nc.publish(subject, payload, reply=reply, headers=headers)
        except BaseException:
            self._pending.pop(reply, None)
            raise
        return reply, future

    def forget(self, reply: str) -> None:
        self._pending.pop(reply, None)

    async def _subscribe(self) -> None:
        async with self._subscribing:
            if not self._prefix:
                prefix = f"{self._nc.new_inbox()}."
                await self._nc.subscribe(f"{prefix}*", cb=self._on_ack)
                self._prefix = prefix

    async def _on_ack(self, msg: Msg) -> None:
        future = self._pending.pop(msg.subject, None)
        if future is None or future.done():
            return
        if msg.headers and msg.headers.get("Status") == "503":  # no stream takes the subject
            future.set_exception(NoStreamResponseError())
            return
        try:
            reply = _ack_reply.decode(msg.data)
        except msgspec.DecodeError:
            future.set_exception(APIError(description=f"unreadable ack: {msg.data[:200]!r}"))
            return
        if reply.error is not None:
            try:
                APIError.from_error(reply.error)  # raises the matching subclass
            except APIError as exc:
                future.set_exception(exc)
        else:
            future.set_result(
                PubAck(stream=reply.stream, seq=reply.seq, domain=reply.domain, duplicate=reply.duplicate)
            )


class WriteBatch:
    """JetStream writes sent back to back and confirmed together: one round trip for the
    lot instead of one per write (the emergency-stop path writes three).

    The stream stores them in the order they were sent, as one connection's messages
    are. A write whose ack does not come within ACK_WAIT is sent again by
    ``publish_with_retry``, with the same ``Nats-Msg-Id``, so it is stored once — but
    then possibly after writes sent later. Callers hold whatever lock orders their
    writes until ``confirmed`` returns, and confirm between writes whose order matters.
    """

    ACK_WAIT = 2.0

    def __init__(
        self,
        js: JetStreamContext,
        acks: AckInbox,
        *,
        deadline: float,
        on_stored: Callable[[Envelope, PubAck], None] | None = None,
    ) -> None:
        self._js = js
        self._acks = acks
        self._deadline = deadline
        self._on_stored = on_stored
        self._sent: list[
            tuple[str, bytes, str | None, Envelope | None, tuple[str, asyncio.Future[PubAck]] | None]
        ] = []

    async def publish(self, event: Envelope) -> None:
        await self.send(subjects.evt(event.system, event.type), encode(event), msg_id=event.id, event=event)

    async def send(
        self, subject: str, payload: bytes, *, msg_id: str | None = None, event: Envelope | None = None
    ) -> None:
        headers = {"Nats-Msg-Id": msg_id} if msg_id else None
        try:
            pending = await self._acks.send(subject, payload, headers)
        except RETRYABLE:
            pending = None  # confirmed() sends it again
        self._sent.append((subject, payload, msg_id, event, pending))

    async def confirmed(self) -> list[PubAck]:
        """Every write sent so far is stored; raises the first write that could not be."""
        sent, self._sent = self._sent, []
        acks: list[PubAck] = []
        failure: BaseException | None = None
        for subject, payload, msg_id, event, pending in sent:
            try:
                ack = await self._ack(subject, payload, msg_id, pending)
            except Exception as exc:  # confirm the others before raising
                failure = failure or exc
                continue
            if event is not None and self._on_stored is not None:
                self._on_stored(event, ack)
            acks.append(ack)
        if failure is not None:
            raise failure
        return acks

    async def _ack(
        self,
        subject: str,
        payload: bytes,
        msg_id: str | None,
        pending: tuple[str, asyncio.Future[PubAck]] | None,
    ) -> PubAck:
        if pending is not None:
            reply, future = pending
            try:
                return await asyncio.wait_for(future, self.ACK_WAIT)
            except RETRYABLE:
                self._acks.forget(reply)
                log.warning("event.batch_resend", subject=subject)
        return await publish_with_retry(self._js, subject, payload, msg_id=msg_id, deadline=self._deadline)


async def when_jetstream_answers(
    operation: Callable[[], Awaitable[T]], *, deadline: float, what: str, first_delay: float = 0.1
) -> T:
    """``operation`` retried with backoff while JetStream cannot answer yet (a server that
    has just (re)joined its cluster is still catching up; a leader is being elected), for
    up to ``deadline`` seconds; then its last error is raised."""
    give_up = time.monotonic() + deadline
    delay = first_delay
    while True:
        try:
            return await operation()
        except RETRYABLE as exc:
            if time.monotonic() + delay > give_up:
                raise
            log.warning("jetstream.not_ready", waiting_for=what, error=type(exc).__name__, retry_in_s=delay)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)


async def streams_when_ready(
    js: JetStreamContext, settings: Settings, *, converge: bool = False
) -> dict[str, KeyValue]:
    """``ensure_all`` at a process's start, waiting up to twice the publish deadline for
    JetStream to answer: a service started beside a server that is rejoining its cluster
    waits for it instead of exiting on its first timeout."""
    return await when_jetstream_answers(
        lambda: ensure_all(js, settings, converge=converge),
        deadline=settings.publish_deadline * 2,
        what="the streams and buckets",
    )


class Superseded(Exception):
    """A fenced write found a newer event on its subject than the writer had seen."""


WRONG_LAST_SEQUENCE = 10071  # JetStream's err_code for Nats-Expected-Last-Subject-Sequence


async def publish_with_retry(
    js: JetStreamContext,
    subject: str,
    payload: bytes,
    *,
    msg_id: str | None,
    deadline: float = 30.0,
    after_seq: int | None = None,
    extra_headers: dict[str, str] | None = None,
) -> PubAck:
    headers = {**(extra_headers or {}), **({"Nats-Msg-Id": msg_id} if msg_id else {})}
    if after_seq is not None:
        # a retry after a lost ack is recognised by its Nats-Msg-Id before this is checked
        headers["Nats-Expected-Last-Subject-Sequence"] = str(after_seq)

    async def once() -> PubAck:
        try:
            return await js.publish(subject, payload, headers=headers or None, timeout=2.0)
        except BadRequestError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                raise Superseded(f"{subject}: {exc.description}") from None
            raise

    try:
        return await when_jetstream_answers(once, deadline=deadline, what=subject, first_delay=0.05)
    except RETRYABLE as exc:
        log.error("event.publish_failed", subject=subject, msg_id=msg_id, error=type(exc).__name__)
        raise
