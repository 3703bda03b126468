"""Everything the gateway holds while it runs: the NATS connection, the read models
(gateway/readmodels), the control client. Created in the app's lifespan, never at import."""

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
from contracts.factory import ensure_factory_streams
from contracts.settings import Settings
from contracts.streams import command_ids_bucket
from contracts.systems import ALL, SYSTEMS
from gateway.ask.area import AskArea
from gateway.cluster_view import nats_servers
from gateway.control import ControlClient, UnknownSystem
from gateway.readmodels.history import History
from gateway.readmodels.registry import ReadModels
from services.runtime.bus import EventPublisher, barrier, connect, streams_when_ready
from services.runtime.drops import DropCounter
from services.runtime.idempotency import CommandLedger

log = structlog.get_logger()

# The unknown-system guard sees every control message (it subscribes aoc.ctl.*.*[.*]):
# explicit limits, so what it cannot keep up with is dropped, counted and answered
GUARD_PENDING_MSGS = 65_536
GUARD_PENDING_BYTES = 32 * 1024 * 1024
AUDIT_NEAR_FULL = 0.8  # share of AOC_AUDIT's byte cap from which the gateway alerts
AUDIT_ALERT_EVERY_S = 60.0


class GatewayState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.live_connections = 0
        self.started = time.time()
        self._stream_info: tuple[float, dict[str, Any]] = (0.0, {})
        self._audit_info: tuple[float, dict[str, Any]] = (0.0, {})
        self._audit_alerted = 0.0
        self._servers_info: tuple[float, dict[str, Any]] = (0.0, {})
        self._subs: list[Any] = []
        self.models: ReadModels  # every read model, typed (gateway/readmodels/registry.py)
        self.history: History  # the activity log below the in-memory window
        self.ask: AskArea | None = None  # POST /api/v1/ask, when AOC_AI_FEATURES_ENABLED
        self.siem: Any = None  # the SIEM service's status (gateway/routes/siem.py, opened by the app)
        self.webhooks: Any = None  # webhook sources and deliveries (gateway/routes/webhooks.py)
        self.drops = DropCounter()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def open(self, nc: Client | None = None) -> None:
        self.nc = nc or await connect(self.settings, name="aoc-gateway", on_slow_consumer=self.on_dropped)
        self.js = self.nc.jetstream()
        # the gateway owns stream config
        buckets = await streams_when_ready(self.js, self.settings, converge=True)
        self.publisher = EventPublisher(self.js, deadline=self.settings.publish_deadline)
        self.control = ControlClient(
            self.nc,
            self.publisher,
            self.settings.control_timeout,
            fold_window=self.settings.refusal_fold_window_s,
            ledger=CommandLedger(buckets["commands"], command_ids_bucket(self.settings).bucket, "http"),
        )
        await ensure_factory_streams(self.js, self.settings)  # requirements are queued there
        self.models = ReadModels(self.nc, self.settings)
        await self.models.start()  # snapshot + tail (or a full replay), then live
        self.history = History(self.js, self.settings.activity_scan_limit)
        if self.settings.ai_features_enabled:
            self.ask = await AskArea.open(self.js, self.settings)
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
        await barrier(self.nc)  # its control subscriptions are in before open returns (like the engines')
        log.info(
            "gateway.ready", applied_seq=self.models.events.last_seq, rows=len(self.models.activity.rows)
        )

    async def close(self) -> None:
        await self.control.close()
        await self.models.stop()
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
        events = self.models.events
        stream = await self.stream_state()
        last_seq = stream.get("last_seq", events.last_seq)
        lag = max(last_seq - events.last_seq, events.pending, 0)
        connected = self.nc.is_connected
        return {
            "nats_connected": connected,
            "replayed": events.ready,
            "applied_seq": events.last_seq,
            "stream_last_seq": last_seq,
            "lag": lag,
            "stale": not connected or not events.ready,
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
                "rows_in_memory": len(self.models.activity.rows),
                "from_snapshot": self.models.loaded is not None,
                "replayed_events": self.models.events.applied,
            },
            "audit": audit,
            "alerts": alerts,
            **self.models.health(),  # readmodels, sources, snapshot
            "uptime_seconds": round(time.time() - self.started, 1),
        }

    async def wait_for_state(self, system: str, state: str, timeout: float = 1.0) -> None:
        """Read-your-writes: after a command, wait until the view shows its result."""
        lifecycle = self.models.systems.lifecycle

        def shows_it() -> bool:
            life = lifecycle.get(system)
            return life is not None and life.state == state

        await self.models.wait_until(shows_it, timeout)
