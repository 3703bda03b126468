"""The gateway's factory views: the requirement ledger (contracts/factory/ledger.py) kept
live from ``aoc.evt.frontend-factory.>``, and the inventory of the gateway's own API
routes that the integrity scan asks for on ``aoc.gateway.routes``.

The gateway owns no factory state: the ledger here is a projection of the factory's
events, replayed at start and followed live, exactly as the factory folds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import types
import typing
from collections.abc import Callable
from typing import Any

import structlog
from fastapi.routing import APIRoute
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from pydantic import BaseModel

from contracts import subjects
from contracts.factory import FACTORY, GATEWAY_ROUTES, GatewayRoute, GatewayRoutes, RouteField, encode
from contracts.factory.ledger import Ledger
from gateway.projections import ChangeSignal

log = structlog.get_logger()

REPLAY_WAIT = 60.0


class FactoryView:
    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.ledger = Ledger()
        self.replayed = asyncio.Event()
        self._changed = ChangeSignal()
        self._subs: list[Any] = []
        self._received = 0  # messages delivered to the current subscription
        self._watchdog: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._follow()
        self._watchdog = asyncio.create_task(self._refollow_after_reconnect())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REPLAY_WAIT):
                while not self.replayed.is_set():
                    info = await self._subs[0].consumer_info()
                    # consumer_seq counts what this consumer sent us; stream_seq may sit at
                    # the stream's floor when no message matched the filter
                    if info.num_pending == 0 and info.delivered.consumer_seq <= self._received:
                        self.replayed.set()  # nothing (more) to replay
                        break
                    await self.wait_changed(0.1)

    async def _follow(self) -> None:
        ledger = self.ledger

        async def on_event(msg: Msg) -> None:
            meta = msg.metadata
            self._received += 1
            ledger.apply_raw(meta.sequence.stream, msg.data)
            if meta.num_pending == 0:
                self.replayed.set()
            self.notify()

        self._received = 0
        start = ledger.applied_seq + 1
        config = (
            ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start)
            if start > 1
            else ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        )
        self._subs.append(
            await self.js.subscribe(
                subjects.evt(FACTORY, ">"),
                stream=subjects.EVENTS_STREAM,
                ordered_consumer=True,
                cb=on_event,
                config=config,
            )
        )

    async def _refollow_after_reconnect(self) -> None:
        # like the main projection feed: a restarted server forgets ordered consumers
        seen = self.nc.stats["reconnects"]
        while True:
            await asyncio.sleep(0.5)
            if self.nc.stats["reconnects"] == seen or not self.nc.is_connected:
                continue
            seen = self.nc.stats["reconnects"]
            try:
                await self._unfollow()
                await self._follow()
            except Exception:
                log.exception("factory_view.refollow_failed")
                seen -= 1

    async def _unfollow(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()

    async def stop(self) -> None:
        if self._watchdog:
            self._watchdog.cancel()
        await self._unfollow()

    # --- waiting for the view to catch up (read-your-writes) ------------------------------------

    def notify(self) -> None:
        self._changed.notify()

    async def wait_changed(self, timeout: float) -> bool:
        return await self._changed.wait(timeout)

    async def wait_until(self, condition: Callable[[], Any], timeout: float) -> Any:
        """The first truthy ``condition()`` within ``timeout`` seconds, else None."""
        deadline = time.monotonic() + timeout
        while True:
            found = condition()
            if found or time.monotonic() >= deadline:
                return found or None
            await self.wait_changed(deadline - time.monotonic())

    async def wait_for_seq(self, seq: int, timeout: float = 1.0) -> bool:
        return bool(await self.wait_until(lambda: self.ledger.applied_seq >= seq, timeout))


# --- the gateway's API routes, for the integrity scan -------------------------------------------


FIELD_TYPES_BY_PYTHON: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    dt.datetime: "datetime",
    dt.date: "date",
}


def route_inventory(routes: list[Any]) -> GatewayRoutes:
    """The /api routes of the given FastAPI routes (one entry per path, all its methods),
    with the record fields of the GET routes that return lists."""
    methods: dict[str, set[str]] = {}
    names: dict[str, str] = {}
    lists: dict[str, list[RouteField]] = {}
    for route in routes:
        if not isinstance(route, APIRoute) or not route.path.startswith("/api/"):
            continue
        methods.setdefault(route.path, set()).update(route.methods or ())
        if "GET" in (route.methods or ()):
            names[route.path] = route.name or ""
            fields = _list_fields(route.response_model)
            if fields is not None:
                lists[route.path] = fields
    return GatewayRoutes(
        routes=[
            GatewayRoute(
                path=path, methods=sorted(methods[path]), name=names.get(path, ""), list_of=lists.get(path)
            )
            for path in sorted(methods)
        ]
    )


def _list_fields(model: Any) -> list[RouteField] | None:
    if typing.get_origin(model) is not list:
        return None
    (item,) = typing.get_args(model) or (None,)
    if not (isinstance(item, type) and issubclass(item, BaseModel)):
        return None
    return [_route_field(name, info.annotation) for name, info in item.model_fields.items()]


def _route_field(name: str, annotation: Any) -> RouteField:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):  # Optional[X] -> X
        inner = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        annotation = inner[0] if len(inner) == 1 else str
        origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return RouteField(name=name, type="enum", values=[str(v) for v in typing.get_args(annotation)])
    return RouteField(name=name, type=FIELD_TYPES_BY_PYTHON.get(annotation, "string"))


class RoutesResponder:
    """Answers ``aoc.gateway.routes`` with the inventory (computed once: routes are static)."""

    def __init__(self, nc: Client, routes: list[Any]) -> None:
        self.nc = nc
        self.body = encode(route_inventory(routes))
        self._sub: Any = None

    async def start(self) -> None:
        async def answer(msg: Msg) -> None:
            if msg.reply:
                await msg.respond(self.body)

        self._sub = await self.nc.subscribe(GATEWAY_ROUTES, cb=answer)

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
