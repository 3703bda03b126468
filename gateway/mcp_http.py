"""`/mcp`: the tools and resources of `aoc mcp` over Streamable HTTP, on the gateway.

The MCP server is still a client of the API, not a second control path: its tools call
the API's own routes in process (through the whole middleware stack, by
``httpx.ASGITransport``) with the bearer token the MCP request came with. So a
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

import asyncio
from typing import TYPE_CHECKING, Any

from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from contracts.settings import Settings
from gateway.security.access import bearer_token
from gateway.security.policy import MCP

if TYPE_CHECKING:
    from services.launcher.mcp_server import GatewayApi

LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
LOOPBACK_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]


class McpEndpoint:
    """The ASGI endpoint of `/mcp`, bound to the gateway app its tools call.

    Built on the first request: the SDK takes about a second to import here, which a
    gateway that restarts (and every replica) would otherwise pay before it serves."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self._app = app
        self._settings = settings
        self._handler: ASGIApp | None = None
        self._building = asyncio.Lock()
        self._api: GatewayApi | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    def route(self) -> Route:
        return Route(MCP, endpoint=self, methods=["GET", "POST", "DELETE"])

    async def _built(self) -> ASGIApp:
        async with self._building:
            if self._handler is None:
                self._handler = await self._build()
        return self._handler

    async def _build(self) -> ASGIApp:
        import httpx
        from mcp.server.transport_security import TransportSecuritySettings

        from services.launcher.mcp_server import GatewayApi, build_server

        self._api = GatewayApi("http://aoc-gateway", None, transport=httpx.ASGITransport(app=self._app))
        server = build_server(self._api)
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=not self._settings.auth_enabled,
            allowed_hosts=LOOPBACK_HOSTS,
            allowed_origins=LOOPBACK_ORIGINS,
        )
        starlette = server.streamable_http_app(
            streamable_http_path=MCP,
            stateless_http=True,
            json_response=True,
            transport_security=security,
            max_request_body_size=self._settings.max_body_bytes,
        )
        # the SDK's request manager runs (its task group) until the gateway shuts down
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def run() -> None:
            try:
                async with server.session_manager.run():
                    started.set_result(None)
                    await self._closing.wait()
            except BaseException as exc:
                if not started.done():  # it could not start: the request that built it says why
                    started.set_exception(exc)
                raise

        self._runner = asyncio.create_task(run(), name="mcp-http")
        await started
        return next(route.app for route in starlette.routes if getattr(route, "path", None) == MCP)

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)
        if self._api is not None:
            await self._api.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = await self._built()
        from services.launcher.mcp_server import CALLER_TOKEN

        # the token the access check has already accepted (none when auth is off)
        reset: Any = CALLER_TOKEN.set(bearer_token(scope) or None)
        try:
            await handler(scope, receive, send)
        finally:
            CALLER_TOKEN.reset(reset)
