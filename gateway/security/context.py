"""Per-request context: the correlation id, the access log line, the latency metric.

The correlation id is the caller's ``X-Request-ID`` when it is a sane token, else a new
one. It is echoed back, bound to every log line of the request, and handed to the
control client (gateway.deps.CorrelationId), which sends it in the command body and as
the ``X-Correlation-ID`` NATS header; the engine puts it on its audit event and log lines.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.events import new_id

log = structlog.get_logger()

REQUEST_ID = re.compile(r"^[\w.:-]{1,128}$")
UNMATCHED = "<unmatched>"  # the route label of a request no route matched (bounded cardinality)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

Observer = Callable[[str, str, int, float], None]  # method, route template, status, seconds


def correlation_id_from(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if REQUEST_ID.fullmatch(candidate):
                return candidate
    return new_id()


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, observe: Observer = lambda *_: None) -> None:
        self.app = app
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        correlation_id = correlation_id_from(scope)
        scope.setdefault("state", {})["correlation_id"] = correlation_id
        started = time.perf_counter()
        status = 500  # what the client gets if the app fails before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = correlation_id
            await send(message)

        with structlog.contextvars.bound_contextvars(correlation_id=correlation_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        state = scope.get("state", {})
        route = state.get("route_template") or UNMATCHED
        method = scope["method"] if scope["method"] in KNOWN_METHODS else "OTHER"  # clients choose it
        self.observe(method, route, status, seconds)
        identity = state.get("identity")
        fields = {
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 1),
            "actor": identity.name if identity else None,
            "client": (scope.get("client") or ("?",))[0],
        }
        # every change and every refusal is worth a line; routine reads only at debug
        if method not in ("GET", "HEAD") or status >= 400:
            log.info("http.request", **fields)
        else:
            log.debug("http.request", **fields)
