"""advisory-refresh's durable state in JetStream KV: advisories and feed states."""

from __future__ import annotations

import asyncio
from typing import TypeVar

import msgspec
import structlog
from nats.js.kv import KeyValue

from contracts.advisory import (
    Advisory,
    FeedState,
    advisory_decoder,
    ensure_advisory_buckets,
    feed_state_decoder,
)
from services.runtime.context import EngineContext

log = structlog.get_logger()

T = TypeVar("T")
LOAD_TIMEOUT = 10.0


async def read_bucket(kv: KeyValue, decoder: msgspec.json.Decoder) -> dict[str, T]:
    """Every current value of a bucket, through one watcher (no per-key round trips).
    A value this code cannot decode (a newer schema) is skipped and logged."""
    values: dict[str, T] = {}
    watcher = await kv.watchall(ignore_deletes=True)
    try:
        while True:
            entry = await watcher.updates(timeout=LOAD_TIMEOUT)
            if entry is None:  # the marker after the initial values
                break
            if entry.operation is not None or not entry.value:
                values.pop(entry.key, None)  # deleted or purged
                continue
            try:
                values[entry.key] = decoder.decode(entry.value)
            except msgspec.DecodeError as exc:
                log.warning("advisory.store.undecodable", key=entry.key, error=str(exc))
    finally:
        await watcher.stop()
    return values


class AdvisoryStore:
    def __init__(self, bus: EngineContext) -> None:
        self.bus = bus

    async def open(self) -> None:
        self.advisories_kv, self.feeds_kv = await self.bus.declare(ensure_advisory_buckets)

    async def load_advisories(self) -> dict[str, Advisory]:
        return await read_bucket(self.advisories_kv, advisory_decoder)

    async def load_feed_states(self) -> dict[str, FeedState]:
        return await read_bucket(self.feeds_kv, feed_state_decoder)

    async def put_advisories(self, advisories: list[Advisory]) -> None:
        await asyncio.gather(*(self.advisories_kv.put(a.id, msgspec.json.encode(a)) for a in advisories))

    async def put_feed_states(self, states: list[FeedState]) -> None:
        await asyncio.gather(*(self.feeds_kv.put(s.name, msgspec.json.encode(s)) for s in states))

    async def delete_feed_states(self, names: list[str]) -> None:
        await asyncio.gather(*(self.feeds_kv.delete(name) for name in names))
