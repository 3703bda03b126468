"""Everything the gateway holds while it runs: the NATS connection, the projection and
its feed, the control client. Created in the app's lifespan, never at import."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import msgspec
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import SlowConsumerError

from contracts import subjects
from contracts.commands import CommandError, CommandReply, decode_command
from contracts.events import encode
from contracts.settings import Settings
from contracts.streams import command_ids_bucket, ensure_all
from contracts.systems import ALL, SYSTEMS
from gateway.cluster_view import nats_servers
from gateway.control import ControlClient, UnknownSystem
from gateway.projections import Projection, ProjectionFeed
from gateway.readmodels.base import ReadModel
from gateway.readmodels.jobs import jobs_read_model
from services.runtime.bus import EventPublisher, barrier, connect
from services.runtime.drops import DropCounter
from services.runtime.idempotency import CommandLedger

log = structlog.get_logger()

REPLAY_WAIT = 120.0  # how long start-up waits for the replay before serving a partial view
# The unknown-system guard sees every control message (it subscribes aoc.ctl.*.*[.*]):
# explicit limits, so what it cannot keep up with is dropped, counted and answered
GUARD_PENDING_MSGS = 65_536
GUARD_PENDING_BYTES = 32 * 1024 * 1024
AUDIT_NEAR_FULL = 0.8  # share of AOC_AUDIT's byte cap from which the gateway alerts
AUDIT_ALERT_EVERY_S = 60.0


class GatewayState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.projection = Projection(window=settings.activity_window)
        self.live_connections = 0
        self.started = time.time()
        self._stream_info: tuple[float, dict[str, Any]] = (0.0, {})
        self._audit_info: tuple[float, dict[str, Any]] = (0.0, {})
        self._audit_alerted = 0.0
        self._servers_info: tuple[float, dict[str, Any]] = (0.0, {})
        self._subs: list[Any] = []
        # per-area state that route modules attach in their on_startup hook
        self.areas: dict[str, Any] = {}
        # read models with the ReadModel protocol (gateway/readmodels), by name
        self.readmodels: dict[str, ReadModel] = {model.name: model for model in (jobs_read_model(),)}
        self.drops = DropCounter()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def open(self, nc: Client | None = None) -> None:
        self.nc = nc or await connect(self.settings, name="aoc-gateway", on_slow_consumer=self.on_dropped)
        self.js = self.nc.jetstream()
        buckets = await ensure_all(self.js, self.settings, converge=True)  # the gateway owns stream config
        self.publisher = EventPublisher(self.js, deadline=self.settings.publish_deadline)
        self.control = ControlClient(
            self.nc,
            self.publisher,
            self.settings.control_timeout,
            fold_window=self.settings.refusal_fold_window_s,
            ledger=CommandLedger(buckets["commands"], command_ids_bucket(self.settings).bucket, "http"),
        )
        self.feed = ProjectionFeed(self.nc, self.projection)
        await self.feed.start()
        for model in self.readmodels.values():
            await model.start(self.js)
        for wildcard in (subjects.ctl_wildcard("*"), subjects.ctl_user_wildcard("*")):
            self._subs.append(
                await self.nc.subscribe(
                    wildcard,
                    cb=self._guard_unknown,
                    pending_msgs_limit=GUARD_PENDING_MSGS,
                    pending_bytes_limit=GUARD_PENDING_BYTES,
                )
            )
        self._subs.append(await self.nc.subscribe(subjects.GATEWAY_HEALTH, cb=self._answer_health))
        await barrier(self.nc)  # the server has these subscriptions before open returns
        self._watchdog = asyncio.create_task(self._resubscribe_after_reconnect())
        await barrier(self.nc)  # the guard subscriptions are in before anyone relies on them
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.feed.replayed.wait(), REPLAY_WAIT)
        for model in self.readmodels.values():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(model.ready.wait(), REPLAY_WAIT)
        await barrier(self.nc)  # its control subscriptions are in before open returns (like the engines')
        log.info("gateway.ready", applied_seq=self.projection.applied_seq, rows=len(self.projection.rows))

    async def _resubscribe_after_reconnect(self) -> None:
        # A restarted nats-server forgets the ordered consumers behind the projection
        # feed, and nats-py does not recreate them: after every reconnect, make sure the
        # streams exist and follow again from the last applied sequence.
        seen = self.nc.stats["reconnects"]
        while True:
            await asyncio.sleep(0.5)
            if self.nc.stats["reconnects"] == seen or not self.nc.is_connected:
                continue
            seen = self.nc.stats["reconnects"]
            try:
                await ensure_all(self.js, self.settings, converge=True)
                await self.feed.resubscribe()
                for model in self.readmodels.values():
                    await model.stop()
                    await model.start(self.js)
                log.info("gateway.resubscribed", applied_seq=self.projection.applied_seq)
            except Exception:
                log.exception("gateway.resubscribe_failed")
                seen -= 1  # try again on the next tick

    async def close(self) -> None:
        self._watchdog.cancel()
        await self.control.close()
        await self.feed.stop()
        for model in self.readmodels.values():
            await model.stop()
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        with contextlib.suppress(Exception):
            await self.nc.drain()

    # --- raw NATS: unknown systems get an answer and an audit record -------------------

    async def _guard_unknown(self, msg: Msg) -> None:
        parsed = subjects.parse_ctl(msg.subject)
        if parsed is None:
            return
        system, verb = parsed
        if system == ALL or system in SYSTEMS:
            return  # the engines answer these
        user = msg.subject.split(".")[4] if msg.subject.count(".") == 4 else None
        try:
            actor = decode_command(msg.data).actor or "nats:anonymous"
        except CommandError:
            actor = "nats:anonymous"
        if user is not None:  # the secure server vouched for the sender's user name
            actor = f"nats:{user}"
        await self.control.audit_unknown(system, verb, actor=actor, reason="", origin="nats")
        if msg.reply:
            reply = CommandReply(
                ok=False,
                system=system,
                verb=verb,
                message=str(UnknownSystem(system)),
                status="rejected",
                error="unknown_system",
            )
            await msg.respond(encode(reply))

    async def on_dropped(self, exc: SlowConsumerError) -> None:
        """A message one of our subscriptions dropped (slow consumer): counted, logged
        (rate-limited), and a dropped control request to an unknown system still gets an
        error reply and a (folded) audit record. Runs in the client's read loop: nothing
        here waits on the server."""
        subscription = getattr(exc.sub, "subject", "") or "?"
        covered = self.drops.note(subscription, exc.subject, time.monotonic())
        if covered:
            log.warning(
                "nats.slow_consumer",
                subscription=subscription,
                dropped=covered,
                dropped_total=self.drops.total,
                subject=exc.subject[:200],
            )
        parsed = subjects.parse_ctl(exc.subject)
        if parsed is None or parsed[0] == ALL or parsed[0] in SYSTEMS:
            return  # the engines answer and audit these themselves
        system, verb = parsed
        user = exc.subject.split(".")[4] if exc.subject.count(".") == 4 else None
        actor = f"nats:{user}" if user else "nats:anonymous"
        if exc.reply:
            reply = CommandReply(
                ok=False,
                system=system[:64],
                verb=verb[:64],
                message="the gateway was overloaded and dropped this command unread; it changed nothing",
                status="rejected",
                error="overloaded",
            )
            self._spawn(self.nc.publish(exc.reply, encode(reply)))
        self._spawn(
            self.control.audit_unknown(
                system, verb, actor=actor, reason="", origin="nats", note="dropped unread: gateway overloaded"
            )
        )

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer_health(self, msg: Msg) -> None:
        if msg.reply:
            await msg.respond(msgspec.json.encode(await self.health()))

    # --- views ------------------------------------------------------------------------

    async def stream_state(self, max_age: float = 1.0) -> dict[str, Any]:
        """AOC_EVENTS state, cached briefly so busy dashboards don't hammer the server."""
        fetched, cached = self._stream_info
        if time.monotonic() - fetched < max_age and cached:
            return cached
        try:
            info = await self.js.stream_info(subjects.EVENTS_STREAM)
        except Exception as exc:  # report, don't fail the view
            return {"stream": subjects.EVENTS_STREAM, "error": type(exc).__name__}
        state = info.state
        cached = {
            "stream": subjects.EVENTS_STREAM,
            "messages": state.messages,
            "bytes": state.bytes,
            "first_seq": state.first_seq,
            "last_seq": state.last_seq,
            "consumer_count": state.consumer_count,
            "max_age_days": self.settings.retention_days,
        }
        self._stream_info = (time.monotonic(), cached)
        return cached

    async def audit_state(self, max_age: float = 1.0) -> dict[str, Any]:
        """AOC_AUDIT: how full it is (it refuses new copies when full) and how far its copy
        of AOC_EVENTS lags. Logs ``audit.near_full`` (at most once a minute) from 80%."""
        fetched, cached = self._audit_info
        if time.monotonic() - fetched < max_age and cached:
            return cached
        try:
            info = await self.js.stream_info(subjects.AUDIT_STREAM)
        except Exception as exc:
            return {"stream": subjects.AUDIT_STREAM, "error": type(exc).__name__}
        cap = info.config.max_bytes or 0
        ratio = round(info.state.bytes / cap, 4) if cap > 0 else 0.0
        lag = sum((source.lag or 0) for source in (info.sources or []))
        cached = {
            "stream": subjects.AUDIT_STREAM,
            "messages": info.state.messages,
            "bytes": info.state.bytes,
            "max_bytes": cap,
            "fill_ratio": ratio,
            "near_full": ratio >= AUDIT_NEAR_FULL,
            "source_lag": lag,
            "first_seq": info.state.first_seq,
            "last_seq": info.state.last_seq,
        }
        if cached["near_full"] and time.monotonic() - self._audit_alerted >= AUDIT_ALERT_EVERY_S:
            self._audit_alerted = time.monotonic()
            log.error(
                "audit.near_full",
                stream=subjects.AUDIT_STREAM,
                fill_ratio=ratio,
                bytes=info.state.bytes,
                max_bytes=cap,
                message="AOC_AUDIT refuses new audit copies when full: raise AOC_AUDIT_MAX_BYTES",
            )
        self._audit_info = (time.monotonic(), cached)
        return cached

    async def nats_servers(self, max_age: float = 2.0) -> dict[str, Any]:
        """The nats-servers and stream replicas (gateway/cluster_view.py), cached briefly."""
        fetched, cached = self._servers_info
        if time.monotonic() - fetched < max_age and cached:
            return cached
        cached = await nats_servers(self.nc, self.js)
        self._servers_info = (time.monotonic(), cached)
        return cached

    async def view_status(self) -> dict[str, Any]:
        stream = await self.stream_state()
        last_seq = stream.get("last_seq", self.projection.applied_seq)
        lag = max(last_seq - self.projection.applied_seq, self.feed.pending)
        connected = self.nc.is_connected
        return {
            "nats_connected": connected,
            "replayed": self.feed.replayed.is_set(),
            "applied_seq": self.projection.applied_seq,
            "stream_last_seq": last_seq,
            "lag": lag,
            "stale": not connected or not self.feed.replayed.is_set(),
        }

    async def health(self) -> dict[str, Any]:
        self._stream_info = (0.0, {})  # health always asks the server
        self._audit_info = (0.0, {})
        view = await self.view_status()
        ok = view["nats_connected"] and view["replayed"]
        audit = await self.audit_state()
        alerts = []
        if audit.get("near_full"):
            alerts.append(f"{subjects.AUDIT_STREAM} is {audit['fill_ratio']:.0%} full")
        if self.drops.total:
            alerts.append(f"{self.drops.total} messages dropped by slow subscriptions")
        return {
            "status": "ok" if ok else "degraded",
            "nats": {
                "connected": view["nats_connected"],
                "url": self.settings.effective_nats_url,
                # a server that cuts off a slow client drops what it had queued for it
                "reconnects": self.nc.stats["reconnects"],
                **self.drops.as_dict(),
            },
            "stream": {"name": subjects.EVENTS_STREAM, "last_seq": view["stream_last_seq"]},
            "projection": {
                "applied_seq": view["applied_seq"],
                "lag": view["lag"],
                "replayed": view["replayed"],
                "rows_in_memory": len(self.projection.rows),
            },
            "readmodels": {
                name: {"ready": model.ready.is_set(), "lag": model.lag}
                for name, model in self.readmodels.items()
            },
            "audit": audit,
            "alerts": alerts,
            "uptime_seconds": round(time.time() - self.started, 1),
        }

    async def wait_for_state(self, system: str, state: str, timeout: float = 1.0) -> None:
        """Read-your-writes: after a command, wait until the view shows its result."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            life = self.projection.lifecycle.get(system)
            if life is not None and life.state == state:
                return
            await self.feed.wait_changed(deadline - time.monotonic())
