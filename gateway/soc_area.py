"""The gateway's SOC/ML area: both projections and their feed, created once per app
(the /soc and /ml route modules share it) and kept in ``state.areas["soc"]``."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import structlog

from contracts import soc
from gateway.soc_projection import ModelsProjection, SocFeed, SocProjection
from gateway.state import GatewayState

log = structlog.get_logger()

AREA = "soc"
REPLAY_WAIT = 60.0  # start-up waits this long for the replay before serving a partial view


@dataclass
class SocArea:
    alerts: SocProjection
    models: ModelsProjection
    feed: SocFeed
    watchdog: asyncio.Task[None] | None = None
    _queue: tuple[float, int | None] = (0.0, None)

    async def queue_depth(self, state: GatewayState) -> int | None:
        """Alerts waiting for triage (the work queue's message count), cached for a second."""
        fetched, depth = self._queue
        if time.monotonic() - fetched < 1.0:
            return depth
        try:
            info = await state.js.stream_info(soc.ALERTS_STREAM)
            depth = info.state.messages
        except Exception:
            depth = None
        self._queue = (time.monotonic(), depth)
        return depth


_creating = asyncio.Lock()


async def soc_area(state: GatewayState) -> SocArea:
    async with _creating:
        area = state.areas.get(AREA)
        if area is not None:
            return area
        alerts, models = SocProjection(), ModelsProjection()
        feed = SocFeed(state.nc, state.settings, alerts, models)
        await feed.start()
        try:
            await asyncio.wait_for(feed.replayed.wait(), REPLAY_WAIT)
        except TimeoutError:
            log.warning("gateway.soc_replay_incomplete", waiting=sorted(feed.waiting))
        area = SocArea(alerts, models, feed)
        area.watchdog = asyncio.create_task(_follow_after_reconnect(state, area))
        state.areas[AREA] = area
        log.info("gateway.soc_ready", alerts=len(alerts.rows), models=len(models.versions))
        return area


async def close_soc_area(state: GatewayState) -> None:
    area = state.areas.pop(AREA, None)
    if area is None:
        return
    if area.watchdog:
        area.watchdog.cancel()
    await area.feed.stop()


async def _follow_after_reconnect(state: GatewayState, area: SocArea) -> None:
    # a restarted nats-server forgets ordered consumers: follow again from what was applied
    seen = state.nc.stats["reconnects"]
    while True:
        await asyncio.sleep(0.5)
        if state.nc.stats["reconnects"] == seen or not state.nc.is_connected:
            continue
        seen = state.nc.stats["reconnects"]
        try:
            await area.feed.resubscribe()
        except Exception:
            log.exception("gateway.soc_resubscribe_failed")
            seen -= 1
