"""One sink = one durable JetStream consumer over AOC_EVENTS, delivered in order.

The stream is the buffer. The runner fetches a batch (at most ``batch`` events), hands
it to the transport, and acknowledges it (AckAll on its last event, confirmed by the
server) only after the receiver accepted it. Until then it retries the same batch with
exponential backoff and jitter (tenacity), telling the server the batch is still being
worked on, so nothing is redelivered behind its back and nothing newer overtakes it. A
receiver that is down for ten minutes costs ten minutes of lag, not events.

At-least-once: a batch the receiver accepted but whose acknowledgement did not reach the
server (the service was killed in between) is delivered again after a restart. That is
the only duplicate there can be, and it is the last batch. Webhook receivers can drop it
by its ``X-AOC-Delivery`` id; HEC and syslog receivers by the event id.

Order after a restart: a batch left unacknowledged by a killed service is not left to
the server's redelivery (AckAll on a later event would quietly cover it, and the server
may hand out newer events first). The runner reads the consumer's ack floor and the
last event it handed out, delivers that range itself, read from the stream, and only
then fetches; any event at or below what it already delivered is acknowledged without
being sent again. Deliveries therefore only ever move forward in stream order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime

import structlog
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter

from contracts import subjects
from contracts.events import envelope_decoder
from contracts.siem import SinkConfig, SinkStatus, durable_name
from services.runtime.loops import stop_task
from services.shared.egress import EgressRefused
from services.siem.formats import Record
from services.siem.transports import DeliveryFailed, Transport

log = structlog.get_logger()

ACK_WAIT_S = 15.0
FETCH_WAIT_S = 1.0
LEASE_STALE_POLL_S = 0.05
RETRYABLE = (DeliveryFailed, EgressRefused, ConnectionError, OSError)


class SinkRunner:
    def __init__(
        self,
        js: JetStreamContext,
        config: SinkConfig,
        transport: Transport,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        lease_fresh: Callable[[], bool] = lambda: True,
    ) -> None:
        self.js = js
        self.config = config
        self.transport = transport
        self.lease_fresh = lease_fresh
        self.durable = durable_name(config.name)
        self.status = SinkStatus(
            name=config.name,
            kind=config.kind,
            url=config.shown_url,
            durable=self.durable,
            enabled=config.enabled,
            state="starting" if config.enabled else "disabled",
        )
        self.stopping = asyncio.Event()
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._sub = None
        self.high_water = 0  # the last stream sequence delivered to the receiver

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        if self.config.enabled:
            self._task = asyncio.create_task(self._run(), name=f"sink-{self.config.name}")

    async def stop(self) -> None:
        self.stopping.set()
        await stop_task(self._task)  # a fetch can swallow a single cancel (asyncio.wait_for on 3.11)
        with contextlib.suppress(Exception):
            await self.transport.close()
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def _run(self) -> None:
        try:
            await self.transport.check_egress()
        except EgressRefused as exc:
            self._failed_at(str(exc)[:300], refused=True)
            log.error("siem.sink_refused", sink=self.config.name, error=str(exc)[:300])
        except ConnectionError as exc:  # DNS trouble: delivery retries it
            self._failed_at(str(exc)[:300])
        while not self.stopping.is_set():
            try:
                await self._bind()
                await self._deliver_forever()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the bus went away, the consumer was deleted ...
                self._failed_at(f"{type(exc).__name__}: {exc}"[:300])
                log.warning("siem.sink_rebind", sink=self.config.name, error=str(exc)[:300])
                await self._sleep(1.0)

    # --- the consumer -------------------------------------------------------------------

    def consumer_config(self, pending: int | None = None) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.durable,
            description=f"SIEM sink {self.config.name} ({self.config.kind})",
            deliver_policy=DeliverPolicy.ALL if self.config.start == "all" else DeliverPolicy.NEW,
            ack_policy=AckPolicy.ALL,
            ack_wait=ACK_WAIT_S,
            max_deliver=-1,  # never give up on an event
            max_ack_pending=pending or self.config.batch,
            filter_subject=self.config.filter,
        )

    async def _bind(self) -> None:
        try:
            info = await self.js.consumer_info(subjects.EVENTS_STREAM, self.durable)
        except NotFoundError:
            info = None
        if info is None:
            await self.js.add_consumer(subjects.EVENTS_STREAM, self.consumer_config())
        else:
            config = self.consumer_config()
            config.deliver_policy = info.config.deliver_policy  # not editable: keep what it is
            config.opt_start_seq = info.config.opt_start_seq
            config.opt_start_time = info.config.opt_start_time
            await self.js.add_consumer(subjects.EVENTS_STREAM, config)
            floor, handed_out = info.ack_floor.stream_seq or 0, info.delivered.stream_seq or 0
            self.high_water = max(self.high_water, floor)
            if handed_out > self.high_water:
                await self._deliver_range(self.high_water + 1, handed_out)
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        self._sub = await self.js.pull_subscribe_bind(self.durable, stream=subjects.EVENTS_STREAM)

    async def _deliver_range(self, first: int, last: int) -> None:
        """Events handed out to a run that died before they were acknowledged: read them
        from the stream and deliver them, in order, before anything newer."""
        log.info("siem.sink_redeliver_unacked", sink=self.config.name, first_seq=first, last_seq=last)
        records: list[Record] = []
        seq = first
        while seq <= last:
            try:
                raw = await self.js.get_msg(
                    subjects.EVENTS_STREAM, seq=seq, subject=self.config.filter, direct=True, next=True
                )
            except NotFoundError:
                break
            if raw.seq is None or raw.seq > last:
                break
            records.append(
                Record(seq=raw.seq, raw=raw.data or b"", event=envelope_decoder.decode(raw.data or b""))
            )
            seq = raw.seq + 1
            if len(records) == self.config.batch or seq > last:
                await self._deliver(records)
                self._delivered(records)
                records = []
        if records:
            await self._deliver(records)
            self._delivered(records)
        self.high_water = max(self.high_water, last)

    async def _deliver_forever(self) -> None:
        assert self._sub is not None
        while not self.stopping.is_set():
            try:
                msgs = await self._sub.fetch(self.config.batch, timeout=FETCH_WAIT_S)
            except (NatsTimeoutError, TimeoutError):
                if self.status.state in ("starting", "delivering"):
                    self.status.state = "idle"
                continue
            if not msgs:
                continue
            # a redelivery of what was already delivered is acknowledged, not sent again
            records = [self._record(msg) for msg in msgs if msg.metadata.sequence.stream > self.high_water]
            if records:
                keeper = asyncio.create_task(self._keep_in_progress(msgs))
                try:
                    await self._deliver(records)
                finally:
                    keeper.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await keeper
                self.high_water = records[-1].seq
            await self._ack(msgs[-1])
            if records:
                self._delivered(records)

    @staticmethod
    def _record(msg) -> Record:
        return Record(seq=msg.metadata.sequence.stream, raw=msg.data, event=envelope_decoder.decode(msg.data))

    async def _keep_in_progress(self, msgs) -> None:
        """While a batch is retried, the server must not redeliver it (ack wait)."""
        while True:
            await asyncio.sleep(ACK_WAIT_S / 3)
            for msg in msgs:
                with contextlib.suppress(Exception):
                    await msg.in_progress()

    async def _ack(self, last) -> None:
        """AckAll on the last event of the batch, confirmed by the server; retried until it
        is (a lost ack would mean a redelivery, i.e. a duplicate, not a loss)."""
        delay = 0.1
        while True:
            try:
                await last.ack_sync(timeout=2.0)
                return
            except Exception as exc:
                if self.stopping.is_set():
                    raise
                log.warning("siem.ack_retry", sink=self.config.name, error=type(exc).__name__)
                await self._sleep(delay)
                delay = min(delay * 2, 2.0)

    # --- delivery with backoff ----------------------------------------------------------

    async def _deliver(self, records: list[Record]) -> None:
        retrying = AsyncRetrying(
            wait=wait_exponential_jitter(
                multiplier=self.config.retry_initial_s,
                max=self.config.retry_max_s,
                jitter=self.config.retry_initial_s,
            ),
            retry=retry_if_exception_type(RETRYABLE),
            stop=lambda _state: self.stopping.is_set(),
            sleep=self._sleep,
            before_sleep=self._before_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await self._while_lease_stale()
                await self.transport.deliver(records)

    async def _while_lease_stale(self) -> None:
        """A holder frozen past its lease window (SIGSTOP, a VM pause) wakes up with its sinks
        still running: it sends nothing until the keeper has renewed the lease, or fenced
        (which stops this runner), so the next holder's deliveries do not interleave."""
        if self.lease_fresh():
            return
        log.warning("siem.delivery_held_lease_stale", sink=self.config.name)
        while not self.lease_fresh():
            if self.stopping.is_set():
                raise asyncio.CancelledError  # fenced: the runner is being stopped
            await self._sleep(LEASE_STALE_POLL_S)

    def _before_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        message = str(exc)[:300] if exc else "unknown failure"
        refused = isinstance(exc, EgressRefused)
        self._failed_at(message, refused=refused)
        self.status.next_retry_s = round(state.upcoming_sleep, 3)
        log.warning(
            "siem.delivery_failed",
            sink=self.config.name,
            error=message,
            attempt=state.attempt_number,
            retry_in_s=round(state.upcoming_sleep, 2),
        )

    def _failed_at(self, message: str, *, refused: bool = False) -> None:
        status = self.status
        status.state = "refused" if refused else "retrying"
        status.failures += 1
        status.consecutive_failures += 1
        status.last_error = message
        status.last_error_at = self._clock()

    def _delivered(self, records: list[Record]) -> None:
        status = self.status
        status.state = "delivering"
        status.delivered += len(records)
        status.batches += 1
        status.consecutive_failures = 0
        status.next_retry_s = 0.0
        status.last_delivery = self._clock()
        status.last_delivered_seq = records[-1].seq

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.stopping.wait()

    # --- status -------------------------------------------------------------------------

    async def refresh_lag(self) -> None:
        """Events the receiver has not accepted yet: pending in the consumer plus handed
        out but unacknowledged."""
        try:
            info = await self.js.consumer_info(subjects.EVENTS_STREAM, self.durable)
        except Exception:
            return
        self.status.lag = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
