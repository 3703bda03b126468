"""/api/v1/advisories — the threat advisories advisory-refresh synthesized, and the
health of its feeds.

Reads are served from memory: two KV watchers mirror the buckets ``aoc_advisories``
and ``aoc_advisory_feeds`` (contracts/advisory.py), so the view is rebuilt from KV at
every start and follows every change live. Nothing here is state of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Any

import msgspec
import structlog
from fastapi import APIRouter, HTTPException, Query
from nats.js.kv import KeyValue

from contracts.advisory import (
    PRIORITIES,
    Advisory,
    FeedState,
    advisory_decoder,
    ensure_advisory_buckets,
    feed_state_decoder,
)
from gateway.deps import Gateway
from gateway.state import GatewayState

log = structlog.get_logger()

router = APIRouter(prefix="/api/v1/advisories", tags=["advisories"])

AREA = "advisories"


class Mirror:
    """One KV bucket in memory, kept current by a watcher (restarted after a reconnect:
    a restarted nats-server forgets the consumer behind it)."""

    def __init__(self, kv: KeyValue, decoder: msgspec.json.Decoder) -> None:
        self.kv = kv
        self.decoder = decoder
        self.values: dict[str, Any] = {}
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow())

    async def restart(self) -> None:
        await self.stop()
        self.start()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _follow(self) -> None:
        watcher = await self.kv.watchall()
        loading: dict[str, Any] = {}
        initial = True
        try:
            async for entry in watcher:
                target = loading if initial else self.values
                if entry is None:  # initial values delivered: swap them in at once
                    self.values, initial = loading, False
                    self.ready.set()
                    continue
                if entry.operation is not None or not entry.value:
                    target.pop(entry.key, None)
                    continue
                try:
                    target[entry.key] = self.decoder.decode(entry.value)
                except msgspec.DecodeError:
                    log.warning("advisories.undecodable", key=entry.key)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()


class AdvisoryView:
    def __init__(self, gateway: GatewayState) -> None:
        self.gateway = gateway

    async def start(self) -> None:
        advisories_kv, feeds_kv = await ensure_advisory_buckets(self.gateway.js, self.gateway.settings)
        self.advisories = Mirror(advisories_kv, advisory_decoder)
        self.feeds = Mirror(feeds_kv, feed_state_decoder)
        self.advisories.start()
        self.feeds.start()
        self._watchdog = asyncio.create_task(self._follow_reconnects())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await asyncio.gather(self.advisories.ready.wait(), self.feeds.ready.wait())

    async def _follow_reconnects(self) -> None:
        nc = self.gateway.nc
        seen = nc.stats["reconnects"]
        while True:
            await asyncio.sleep(0.5)
            if nc.stats["reconnects"] == seen or not nc.is_connected:
                continue
            seen = nc.stats["reconnects"]
            try:
                await ensure_advisory_buckets(self.gateway.js, self.gateway.settings)
                await self.advisories.restart()
                await self.feeds.restart()
            except Exception:
                log.exception("advisories.rewatch_failed")
                seen -= 1

    async def stop(self) -> None:
        self._watchdog.cancel()
        await self.advisories.stop()
        await self.feeds.stop()

    @property
    def ready(self) -> bool:
        return self.advisories.ready.is_set() and self.feeds.ready.is_set()


async def on_startup(state: GatewayState) -> None:
    view = AdvisoryView(state)
    await view.start()
    state.areas[AREA] = view


async def on_shutdown(state: GatewayState) -> None:
    view = state.areas.pop(AREA, None)
    if view is not None:
        await view.stop()


def _view(gw: GatewayState) -> AdvisoryView:
    return gw.areas[AREA]


def _urgency(advisory: Advisory) -> tuple:
    rank = PRIORITIES.index(advisory.priority) if advisory.priority in PRIORITIES else len(PRIORITIES)
    return (rank, not advisory.known_exploited, -(advisory.cvss or 0.0), advisory.id)


def _as_dict(advisory: Advisory, *, evidence: bool) -> dict[str, Any]:
    body = msgspec.to_builtins(advisory)
    if not evidence:
        body.pop("evidence", None)
    return body


@router.get("")
async def list_advisories(
    gw: Gateway,
    priority: list[str] | None = Query(
        None, description="critical, high, medium, low; repeat or comma-separate"
    ),
    known_exploited: bool | None = None,
    affected: bool | None = Query(None, description="only advisories that name an inventory asset (or none)"),
    asset: str | None = Query(None, max_length=200, description="an inventory asset id"),
    cve: str | None = Query(None, max_length=30),
    product: str | None = Query(None, max_length=200, description="substring of an affected product"),
    source: str | None = Query(None, max_length=64, description="a feed name"),
    q: str | None = Query(None, max_length=200, description="text in id, title or description"),
    min_cvss: float | None = Query(None, ge=0, le=10),
    updated_since: datetime | None = None,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
    include_evidence: bool = False,
) -> dict[str, Any]:
    view = _view(gw)
    wanted = {p.strip().lower() for value in priority or [] for p in value.split(",") if p.strip()}
    unknown = wanted - set(PRIORITIES)
    if unknown:
        raise HTTPException(422, f"unknown priority {sorted(unknown)}; expected {', '.join(PRIORITIES)}")
    text = q.lower() if q else None
    product_text = product.lower() if product else None

    def keep(a: Advisory) -> bool:
        return (
            (not wanted or a.priority in wanted)
            and (known_exploited is None or a.known_exploited == known_exploited)
            and (affected is None or bool(a.affected_assets) == affected)
            and (asset is None or asset in a.affected_assets)
            and (cve is None or cve.upper() in a.cves)
            and (product_text is None or any(product_text in p.lower() for p in a.products))
            and (source is None or source in a.sources)
            and (min_cvss is None or (a.cvss is not None and a.cvss >= min_cvss))
            and (updated_since is None or (a.updated is not None and a.updated >= updated_since))
            and (text is None or text in f"{a.id} {a.title} {a.description}".lower())
        )

    matching = sorted((a for a in view.advisories.values.values() if keep(a)), key=_urgency)
    page = matching[offset : offset + limit]
    counts = {p: 0 for p in PRIORITIES}
    for advisory in matching:
        counts[advisory.priority] = counts.get(advisory.priority, 0) + 1
    return {
        "advisories": [_as_dict(a, evidence=include_evidence) for a in page],
        "total": len(matching),
        "count": len(page),
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if offset + limit < len(matching) else None,
        "counts_by_priority": counts,
        "view": {"ready": view.ready, "advisories_in_memory": len(view.advisories.values)},
    }


@router.get("/feeds")
async def feeds(gw: Gateway) -> dict[str, Any]:
    view = _view(gw)
    states: list[FeedState] = sorted(view.feeds.values.values(), key=lambda s: s.name)
    return {
        "feeds": [msgspec.to_builtins(state) for state in states],
        "count": len(states),
        "failing": [state.name for state in states if state.status == "failing"],
        "view": {"ready": view.ready},
    }


@router.get("/{advisory_id}")
async def get_advisory(advisory_id: str, gw: Gateway) -> dict[str, Any]:
    advisory = _view(gw).advisories.values.get(advisory_id) or _view(gw).advisories.values.get(
        advisory_id.upper()
    )
    if advisory is None:
        raise HTTPException(404, f"no advisory {advisory_id!r}")
    return _as_dict(advisory, evidence=True)
