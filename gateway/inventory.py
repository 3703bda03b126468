"""The inventory of the gateway's own API routes, which the integrity scan asks for on
``aoc.gateway.routes``: every /api path with its methods, and the record fields of the
GET routes that declare a list response (``response_model=list[Model]``)."""

from __future__ import annotations

import contextlib
import datetime as dt
import types
import typing
from typing import Any

from fastapi.routing import APIRoute
from nats.aio.client import Client
from nats.aio.msg import Msg
from pydantic import BaseModel

from contracts.factory import GATEWAY_ROUTES, GatewayRoute, GatewayRoutes, RouteField, encode

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
