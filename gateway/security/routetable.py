"""The app's routes as (methods, path template) entries the access check can match
before the router runs, so a request is refused before its body is read and before
any handler, mount or plain Starlette route sees it.

Matching follows the router: routes in declaration order, the first full match wins.
The router's own choice is checked again after routing (``RouteTable.templates_of``
on ``request.scope["route"]``), so a disagreement fails closed instead of open.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute, Mount, compile_path


@dataclass(frozen=True, slots=True)
class RouteEntry:
    template: str
    methods: frozenset[str] | None  # None: a mount, any method
    pattern: re.Pattern[str]
    route: BaseRoute

    def matches_path(self, path: str) -> bool:
        return self.pattern.match(path) is not None

    def allows(self, method: str) -> bool:
        if self.methods is None:
            return True
        return method in self.methods or (method == "HEAD" and "GET" in self.methods)


def _entry(route: BaseRoute, path: str, methods: Iterable[str] | None) -> RouteEntry:
    if isinstance(route, Mount):
        prefix = re.escape(path.rstrip("/"))
        return RouteEntry(path.rstrip("/") or "/", None, re.compile(f"^{prefix}(/.*)?$"), route)
    pattern, _, _ = compile_path(path)
    return RouteEntry(path, frozenset(methods or ()), pattern, route)


class RouteTable:
    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        self.entries: list[RouteEntry] = []
        for context in iter_route_contexts(list(routes)):
            path = context.path
            if path is None:
                continue
            self.entries.append(_entry(context.original_route, path, context.methods))

    def match(self, method: str, path: str) -> RouteEntry | None:
        """The entry the router would pick; a path match with another method (405) counts."""
        partial = None
        for entry in self.entries:
            if entry.matches_path(path):
                if entry.allows(method):
                    return entry
                partial = partial or entry
        return partial

    def templates_of(self, route: BaseRoute) -> list[str]:
        """Every template a route object is reachable under (a router may be included twice)."""
        return [entry.template for entry in self.entries if entry.route is route]

    def endpoints(self) -> list[tuple[str, str]]:
        """(method, template) of every route, HEAD left out: the surface the policy covers."""
        found = []
        for entry in self.entries:
            methods = entry.methods if entry.methods is not None else frozenset({"GET"})
            found += [(method, entry.template) for method in sorted(methods) if method != "HEAD"]
        return found
