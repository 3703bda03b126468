"""Test helpers shipped beside the runtime: run engines in-process against a real
nats-server, and watch the event stream for what they said."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import nats
from nats.aio.client import Client
from nats.js.api import ConsumerConfig, DeliverPolicy

from contracts import subjects
from contracts.events import Envelope, envelope_decoder
from contracts.settings import Settings
from contracts.systems import SYSTEMS
from services.runtime.engine import Engine
from services.runtime.host import EngineHost


def engine_class(slug: str) -> type[Engine]:
    module = importlib.import_module(f"services.{SYSTEMS[slug].module}.engine")
    return next(
        obj
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, Engine) and getattr(obj, "slug", None) == slug
    )


@contextlib.asynccontextmanager
async def running_engines(
    settings: Settings, slugs: list[str] | None = None
) -> AsyncIterator[dict[str, EngineHost]]:
    hosts = {slug: EngineHost(engine_class(slug)(settings), settings) for slug in (slugs or list(SYSTEMS))}
    await asyncio.gather(*(host.open() for host in hosts.values()))
    try:
        yield hosts
    finally:
        await asyncio.gather(*(host.close() for host in hosts.values()), return_exceptions=True)


async def settled(
    hosts: dict[str, EngineHost],
    ready: Callable[[], bool] = lambda: True,
    *,
    quiet: float = 0.5,
    timeout: float = 30.0,
) -> None:
    """Wait until start-up work is over: ``ready()`` holds and the event stream has been
    quiet for ``quiet`` seconds. Tests that count events need this: engines keep
    publishing for a while after they open (first cycles, a first model). (Polling loops
    are always mid-cycle, so "no cycle in flight" would never hold.)"""
    js = next(iter(hosts.values())).js
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_seq, since = -1, loop.time()
    while loop.time() < deadline:
        seq = (await js.stream_info(subjects.EVENTS_STREAM)).state.last_seq
        if seq != last_seq or not ready():
            last_seq, since = seq, loop.time()
        elif loop.time() - since >= quiet:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"engines still busy after {timeout}s")


class EventTap:
    """Collects every event of AOC_EVENTS (from the start) with its stream sequence."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self.events: list[tuple[int, Envelope]] = []
        self._changed = asyncio.Event()

    async def start(self) -> EventTap:
        js = self._nc.jetstream()

        async def on_msg(msg: Any) -> None:
            self.events.append((msg.metadata.sequence.stream, envelope_decoder.decode(msg.data)))
            self._changed.set()

        self._sub = await js.subscribe(
            subjects.EVENTS_SUBJECTS,
            ordered_consumer=True,
            cb=on_msg,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        return self

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self._sub.unsubscribe()

    def matching(self, predicate: Callable[[Envelope], bool]) -> list[Envelope]:
        return [event for _, event in self.events if predicate(event)]

    async def wait_for(self, predicate: Callable[[Envelope], bool], timeout: float = 5.0) -> Envelope:
        async def first() -> Envelope:
            while True:
                found = self.matching(predicate)
                if found:
                    return found[0]
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(first(), timeout)


async def connect_plain(url: str) -> Client:
    """A bare connection, like the `nats` CLI: core publish/request, no headers."""
    return await nats.connect(url, name="test-cli")
