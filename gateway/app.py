"""The FastAPI app factory. No global broker or connection: everything lives in the
lifespan and on ``app.state.gateway``.

Request path, outermost first: security headers -> CORS (only with AOC_CORS_ORIGINS)
-> request context (correlation id, access log, latency) -> error guard (a JSON 500
with those headers) -> body size limit (JSON 413) -> access check (who, may they, rate
limit) -> FastAPI (routing, the post-routing access check)."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry

from contracts.settings import Settings, get_settings
from gateway.control import CommandRefused, EngineTimeout, UnknownSystem
from gateway.inventory import RoutesResponder
from gateway.mcp_http import McpEndpoint
from gateway.routes import route_modules
from gateway.routes import siem as siem_routes
from gateway.routes import webhooks as webhook_routes
from gateway.routes.prometheus import BusCollector, HttpMetrics
from gateway.security import api as auth_api
from gateway.security.access import AccessGuard, AccessMiddleware, verify_route_access
from gateway.security.context import RequestContextMiddleware
from gateway.security.errors import BodyLimit, ErrorGuard, not_unicode, too_deep, validation_error
from gateway.security.headers import SecurityHeadersMiddleware
from gateway.state import GatewayState
from services.runtime.bus import barrier

log = structlog.get_logger()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    modules = route_modules()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        gateway = GatewayState(settings)
        await gateway.open()  # the read models are loaded and following when it returns
        gateway.siem = await siem_routes.open_view(gateway)
        gateway.webhooks = await webhook_routes.open_area(gateway)
        app.state.gateway = gateway
        # the integrity scan asks for the API routes (app.routes nests included routers)
        routes = RoutesResponder(gateway.nc, [route for module in modules for route in module.router.routes])
        await routes.start()
        await barrier(gateway.nc)  # its subscriptions are in before it serves a request
        try:
            yield
        finally:
            if mcp is not None:
                await mcp.close()
            await routes.stop()
            await gateway.close()

    docs = settings.docs
    app = FastAPI(
        title="AOC — Admin Operations Center",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
        # the body limit is gateway.security.errors.BodyLimit, inside the middlewares that
        # add the security headers (FastAPI's own 413 is sent outside them)
        # the authoritative access check, on the route the router actually chose
        dependencies=[Depends(verify_route_access)],
    )
    app.include_router(auth_api.router)
    for module in modules:
        app.include_router(module.router)
    # MCP over HTTP (gateway/mcp_http.py): its tools call the routes above, as the caller
    mcp = McpEndpoint(app, settings) if settings.mcp_http else None
    if mcp is not None:
        app.router.routes.append(mcp.route())

    registry = CollectorRegistry()
    http_metrics = HttpMetrics(registry)
    app.state.metrics_registry = registry
    app.state.bus_collector = BusCollector(lambda: getattr(app.state, "gateway", None))
    registry.register(app.state.bus_collector)

    guard = AccessGuard(settings, lambda: app.routes, on_denied=http_metrics.count_denied)
    app.state.access_guard = guard
    # add_middleware puts each one outside the ones before it
    app.add_middleware(AccessMiddleware, guard=guard)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(ErrorGuard)
    app.add_middleware(RequestContextMiddleware, observe=http_metrics.observe)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=False,  # bearer tokens travel in a header, never in cookies
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID", "Idempotency-Key"],
            expose_headers=["X-Request-ID", "Retry-After"],
            max_age=600,
        )
    app.add_middleware(SecurityHeadersMiddleware, csp=settings.csp)

    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(RecursionError, too_deep)  # type: ignore[arg-type]
    app.add_exception_handler(UnicodeEncodeError, not_unicode)  # type: ignore[arg-type]

    @app.exception_handler(CommandRefused)
    async def command_refused(_: Request, exc: CommandRefused) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "error": "invalid_command"}, status_code=422)

    @app.exception_handler(UnknownSystem)
    async def unknown_system(_: Request, exc: UnknownSystem) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "system": exc.system}, status_code=404)

    @app.exception_handler(EngineTimeout)
    async def engine_timeout(_: Request, exc: EngineTimeout) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "system": exc.system}, status_code=504)

    if docs:
        app.openapi = lambda: _openapi_with_bearer(app)  # type: ignore[method-assign]
    _announce_auth_mode(settings, guard)
    return app


def _openapi_with_bearer(app: FastAPI) -> dict[str, Any]:
    """The schema, saying every operation takes a bearer token (Swagger's Authorize button)."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"}
        }
        schema["security"] = [{"bearer": []}]
        app.openapi_schema = schema
    return app.openapi_schema


def _announce_auth_mode(settings: Settings, guard: AccessGuard) -> None:
    if not settings.auth_enabled:
        log.warning(
            "auth.DISABLED",
            message="AOC_AUTH_ENABLED=false: every caller is an anonymous admin. Never expose this gateway.",
        )
    elif not guard.authenticator.has_credentials():
        log.error(
            "auth.no_credentials",
            message="no admin token, token registry or JWT key: every API call will be refused (401). "
            "Run `aoc up` once, or set AOC_ADMIN_TOKEN.",
        )
