"""`/mcp`: the tools and resources of `aoc mcp` over Streamable HTTP, on the gateway.

The MCP server is still a client of the API, not a second control path: its tools call
the API's own routes in process (through the whole middleware stack, by
``httpx.ASGITransport``) with the Authorization header the MCP request came with. So a
viewer's token reads and is refused a change, an operator's triggers, an admin's stops;
each change is metered and audited by its route, with origin ``mcp:<client name>``.

- Stateless, JSON replies: no session lives in one gateway process, so any replica
  answers any request. A stateless request cannot be asked a question back, so the kill
  switch over HTTP needs ``confirm: true``.
- The access check lets ``POST /mcp`` through for any known caller (viewer and up) and
  does not meter it as a change (gateway/security/policy.UNMETERED_ROUTES); what it does
  is checked and metered where it lands.
- DNS-rebinding protection (the SDK's Host/Origin check) guards `/mcp` only when auth is
  off: with auth on, every call needs a bearer token, which a browser never sends on its
  own, like the rest of the API.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

import httpx
from mcp.server.transport_security import TransportSecuritySettings
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from contracts.settings import Settings
from gateway.security.policy import MCP
from services.launcher.mcp_server import CALLER_AUTHORIZATION, GatewayApi, build_server

LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
LOOPBACK_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]


class McpEndpoint:
    """The ASGI endpoint of `/mcp`, bound to the gateway app its tools call."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.api = GatewayApi("http://aoc-gateway", None, transport=httpx.ASGITransport(app=app))
        self.server = build_server(self.api)
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=not settings.auth_enabled,
            allowed_hosts=LOOPBACK_HOSTS,
            allowed_origins=LOOPBACK_ORIGINS,
        )
        starlette = self.server.streamable_http_app(
            streamable_http_path=MCP,
            stateless_http=True,
            json_response=True,
            transport_security=security,
            max_request_body_size=settings.max_body_bytes,
        )
        self._handler = next(route.app for route in starlette.routes if getattr(route, "path", None) == MCP)

    def route(self) -> Route:
        return Route(MCP, endpoint=self, methods=["GET", "POST", "DELETE"])

    def running(self) -> AbstractAsyncContextManager[None]:
        """The SDK's request manager, for the app's lifespan."""
        return self.server.session_manager.run()

    async def close(self) -> None:
        await self.api.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        authorization = next(
            (value.decode("latin-1") for name, value in scope["headers"] if name == b"authorization"), None
        )
        token = CALLER_AUTHORIZATION.set(authorization)
        try:
            await self._handler(scope, receive, send)
        finally:
            CALLER_AUTHORIZATION.reset(token)
