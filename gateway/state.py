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

from contracts import subjects
from contracts.commands import CommandError, CommandReply, decode_command
from contracts.events import encode
from contracts.settings import Settings
from contracts.streams import ensure_all
from contracts.systems import ALL, SYSTEMS
from gateway.cluster_view import nats_servers
from gateway.control import ControlClient, UnknownSystem
from gateway.projections import Projection, ProjectionFeed
from services.runtime.bus import EventPublisher, barrier, connect

log = structlog.get_logger()

REPLAY_WAIT = 120.0  # how long start-up waits for the replay before serving a partial view


class GatewayState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.projection = Projection(window=settings.activity_window)
        self.live_connections = 0
        self.started = time.time()
        self._stream_info: tuple[float, dict[str, Any]] = (0.0, {})
        self._servers_info: tuple[float, dict[str, Any]] = (0.0, {})
        self._subs: list[Any] = []
        # per-area state that route modules attach in their on_startup hook
        self.areas: dict[str, Any] = {}

    async def open(self, nc: Client | None = None) -> None:
        self.nc = nc or await connect(self.settings, name="aoc-gateway")
        self.js = self.nc.jetstream()
        await ensure_all(self.js, self.settings)
        self.publisher = EventPublisher(self.js, deadline=self.settings.publish_deadline)
        self.control = ControlClient(self.nc, self.publisher, self.settings.control_timeout)
        self.feed = ProjectionFeed(self.nc, self.projection)
        await self.feed.start()
        for wildcard in (subjects.ctl_wildcard("*"), subjects.ctl_user_wildcard("*")):
            self._subs.append(await self.nc.subscribe(wildcard, cb=self._guard_unknown))
        self._subs.append(await self.nc.subscribe(subjects.GATEWAY_HEALTH, cb=self._answer_health))
        await barrier(self.nc)  # the server has these subscriptions before open returns
        self._watchdog = asyncio.create_task(self._resubscribe_after_reconnect())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.feed.replayed.wait(), REPLAY_WAIT)
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
                await ensure_all(self.js, self.settings)
                await self.feed.resubscribe()
                log.info("gateway.resubscribed", applied_seq=self.projection.applied_seq)
            except Exception:
                log.exception("gateway.resubscribe_failed")
                seen -= 1  # try again on the next tick

    async def close(self) -> None:
        self._watchdog.cancel()
        await self.feed.stop()
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
        view = await self.view_status()
        ok = view["nats_connected"] and view["replayed"]
        return {
            "status": "ok" if ok else "degraded",
            "nats": {"connected": view["nats_connected"], "url": self.settings.effective_nats_url},
            "stream": {"name": subjects.EVENTS_STREAM, "last_seq": view["stream_last_seq"]},
            "projection": {
                "applied_seq": view["applied_seq"],
                "lag": view["lag"],
                "replayed": view["replayed"],
                "rows_in_memory": len(self.projection.rows),
            },
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
