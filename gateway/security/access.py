"""The access check: every HTTP request is matched to its route, its caller identified,
and refused unless the caller's role meets the policy — before the body is read and
before any handler, mount or plain route runs.

401: no usable credential (none, malformed, unknown, expired, wrong audience ...).
403: a known caller whose role is too low. 429: the caller's mutating requests exceed
the rate limit. 503: the rate limiter cannot decide (fails closed).

``verify_route_access`` (an app-level dependency) checks again after routing, against
the route the router actually chose, so the two can never disagree in the open
direction.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs

import structlog
from fastapi import HTTPException, WebSocketException
from starlette.requests import HTTPConnection
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from contracts.identity import Role
from contracts.settings import Settings
from gateway.security.authn import Authenticator, InvalidToken
from gateway.security.policy import (
    PUBLIC,
    Access,
    accepts_ticket,
    metered,
    required_access,
    signed_route,
    strictest,
)
from gateway.security.ratelimit import LimiterUnavailable, RateLimiter
from gateway.security.roles import BEARER_CHALLENGE, Identity
from gateway.security.routetable import RouteTable

log = structlog.get_logger()

ANONYMOUS_ADMIN = Identity("anonymous", Role.ADMIN, "disabled")


@dataclass(frozen=True, slots=True)
class Decision:
    identity: Identity | None
    template: str | None
    status: int = 200  # 200 = let it through
    detail: str = ""
    headers: tuple[tuple[str, str], ...] = ()


def request_method(scope: Scope) -> str:
    return scope.get("method", "GET")  # a websocket handshake is a GET


def request_path(scope: Scope) -> str:
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def bearer_token(scope: Scope) -> str | None:
    """The token of 'Authorization: Bearer <token>'; '' when the header is there but unusable."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


class AccessGuard:
    """Decides one request; shared by the middleware and the post-routing dependency."""

    def __init__(
        self,
        settings: Settings,
        routes: Callable[[], list[BaseRoute]],
        on_denied: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.enabled = settings.auth_enabled
        self.authenticator = Authenticator(settings)
        self.limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
        # signed routes (webhooks) carry no identity: metered per client address, apart
        self.signed_limiter = RateLimiter(
            settings.webhook_rate_limit_per_minute, settings.webhook_rate_limit_burst
        )
        self._routes = routes
        self._table: RouteTable | None = None
        self._on_denied = on_denied

    @property
    def table(self) -> RouteTable:
        # built on first use: by then every route module has added its routes
        if self._table is None:
            self._table = RouteTable(self._routes())
        return self._table

    def required_for_route(self, method: str, route: BaseRoute | None) -> Access:
        templates = self.table.templates_of(route) if route is not None else []
        if not templates:
            return required_access(method, None)
        return strictest([required_access(method, template) for template in templates])

    def identify(self, scope: Scope, template: str | None) -> tuple[Identity | None, str]:
        """(identity, why not): the caller, or None with the reason for a 401."""
        if not self.enabled:
            return ANONYMOUS_ADMIN, ""
        token = bearer_token(scope)
        if token is None and accepts_ticket(request_method(scope), template):
            tickets = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("ticket")
            if tickets:
                try:
                    return self.authenticator.from_ticket(tickets[0]), ""
                except InvalidToken as exc:
                    return None, str(exc)
        if token is None:
            return None, "authentication required: send 'Authorization: Bearer <token>'"
        if not token:
            return None, "malformed Authorization header: expected 'Bearer <token>'"
        try:
            return self.authenticator.authenticate(token), ""
        except InvalidToken as exc:
            return None, str(exc)

    def decide(self, scope: Scope) -> Decision:
        method = request_method(scope)
        entry = self.table.match(method, request_path(scope))
        template = entry.template if entry else None
        required = required_access(method, template)
        identity, why = self.identify(scope, template)
        if required is PUBLIC:
            if signed_route(method, template):
                return self._meter(scope, template)
            return Decision(identity, template)  # a bad credential does not matter here
        if identity is None:
            error = (
                'Bearer realm="aoc", error="invalid_token"' if bearer_token(scope) else 'Bearer realm="aoc"'
            )
            return self._deny(
                Decision(None, template, 401, why, (("www-authenticate", error),)), "unauthenticated"
            )
        if identity.role is None or identity.role < required:
            have = identity.role.label if identity.role else "no role"
            target = template or request_path(scope)
            detail = f"{identity.name} ({have}) may not {method} {target}: needs {required.label}"
            return self._deny(Decision(identity, template, 403, detail), "forbidden")
        if metered(method, template):
            try:
                wait = self.limiter.retry_after(identity.name)
            except LimiterUnavailable as exc:
                log.error("ratelimit.unavailable", error=str(exc))
                return self._deny(
                    Decision(identity, template, 503, "rate limiter unavailable; try again"), "limiter"
                )
            if wait > 0:
                retry = (("retry-after", str(math.ceil(wait))),)
                detail = f"too many changes from {identity.name}; retry in {math.ceil(wait)} s"
                return self._deny(Decision(identity, template, 429, detail, retry), "rate_limited")
        return Decision(identity, template)

    def _meter(self, scope: Scope, template: str | None) -> Decision:
        """A signed route: no identity (the route verifies the signature); a rate limit per
        client address, so nobody floods it (or its audit of refusals)."""
        client = (scope.get("client") or ("unknown",))[0]
        try:
            wait = self.signed_limiter.retry_after(f"signed:{client}")
        except LimiterUnavailable as exc:
            log.error("ratelimit.unavailable", error=str(exc))
            return self._deny(Decision(None, template, 503, "rate limiter unavailable; try again"), "limiter")
        if wait > 0:
            retry = (("retry-after", str(math.ceil(wait))),)
            detail = f"too many requests from {client}; retry in {math.ceil(wait)} s"
            return self._deny(Decision(None, template, 429, detail, retry), "rate_limited")
        return Decision(None, template)

    def _deny(self, decision: Decision, reason: str) -> Decision:
        self._on_denied(reason)
        return decision


class AccessMiddleware:
    def __init__(self, app: ASGIApp, guard: AccessGuard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)  # lifespan
            return
        decision = self.guard.decide(scope)
        state = scope.setdefault("state", {})
        state["identity"] = decision.identity
        state["route_template"] = decision.template
        if decision.status == 200:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # policy violation
            return
        body = json.dumps({"detail": decision.detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers += [(name.encode(), value.encode()) for name, value in decision.headers]
        await send({"type": "http.response.start", "status": decision.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def verify_route_access(connection: HTTPConnection) -> None:
    """After routing: the route the router chose must allow this caller too."""
    guard: AccessGuard = connection.app.state.access_guard
    method = request_method(connection.scope)
    required = guard.required_for_route(method, connection.scope.get("route"))
    if required is PUBLIC:
        return
    identity: Identity | None = getattr(connection.state, "identity", None)
    if identity is not None and identity.role is not None and identity.role >= required:
        return
    log.error("access.route_mismatch", path=connection.url.path, route=str(connection.scope.get("route")))
    if connection.scope["type"] == "websocket":
        raise WebSocketException(code=1008)
    if identity is None:
        raise HTTPException(401, "authentication required", headers=BEARER_CHALLENGE)
    raise HTTPException(403, f"needs {required.label}")
